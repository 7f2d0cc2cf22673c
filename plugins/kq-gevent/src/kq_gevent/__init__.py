"""kq-gevent: the ``gevent`` pool, which runs each task in a greenlet.

Every ``kq`` command imports this module when the plugin is installed, so it imports gevent
only when the pool is really used (gevent adds ~40 ms and ~80 modules to start-up), and it
never monkey-patches on import: :func:`patch` runs only when ``kq worker`` is started with
``-P gevent`` (or ``KQ_WORKER_POOL=gevent``), before the app is imported.
"""

from __future__ import annotations

from kq import hookimpl
from kq.pool import PoolCapabilities, PoolSpec
from kq.specs import lazy

__all__ = ["CAPABILITIES", "DEFAULT_CONCURRENCY", "kq_pools", "patch"]

#: Greenlets can be interrupted at any point where they yield, so both limits are enforced;
#: a slot is a counter, so the pool grows and shrinks for free.
CAPABILITIES = PoolCapabilities(soft_time_limit=True, hard_time_limit=True, autoscale=True)

#: A waiting greenlet costs a few KiB and no CPU: the point of this pool is many at once. The
#: worker reserves ``concurrency * (1 + prefetch_multiplier)`` messages, which bounds it.
DEFAULT_CONCURRENCY = 100


def patch() -> None:
    """Make the standard library cooperative (sockets, sleep, locks, queues, ...).

    Called before the app is imported so that the app, its libraries and the worker's own
    broker and result-backend I/O all yield to the gevent hub instead of blocking it.
    """
    from gevent import monkey

    monkey.patch_all()


@hookimpl
def kq_pools() -> list[PoolSpec]:
    return [
        PoolSpec(
            name="gevent",
            factory=lazy("kq_gevent.pool:GeventPool"),
            capabilities=CAPABILITIES,
            default_concurrency=DEFAULT_CONCURRENCY,
            setup=patch,
            description="a greenlet per task (gevent, monkey-patched); for many I/O-bound tasks",
        )
    ]
