"""kq-eventlet: the ``eventlet`` pool, for applications already written for eventlet.

eventlet is in bugfix-only maintenance and warns on import that new projects should not use it;
new code belongs on the ``gevent`` pool (kq-gevent) or on asyncio. This module is imported by
every ``kq`` command when the plugin is installed, so it never imports eventlet itself (that
costs ~160 ms, loads dnspython and prints eventlet's deprecation warning): the pool module
does, once the pool is used, and :func:`patch` monkey-patches only when ``kq worker`` is
started with ``-P eventlet`` (or ``KQ_WORKER_POOL=eventlet``), before the app is imported.
"""

from __future__ import annotations

from kq import hookimpl
from kq.pool import PoolCapabilities, PoolSpec
from kq.specs import lazy

__all__ = ["CAPABILITIES", "DEFAULT_CONCURRENCY", "kq_pools", "patch"]

#: A green thread can be interrupted where it yields, which is enough for a soft limit. A hard
#: limit must also stop a task that computes without yielding, which eventlet cannot (see the
#: README), so it is not declared and the worker warns when a task asks for one. A slot is a
#: counter, so the pool grows and shrinks for free.
CAPABILITIES = PoolCapabilities(soft_time_limit=True, autoscale=True)

#: Waiting green threads are cheap; the worker's reservation of ``concurrency * (1 +
#: prefetch_multiplier)`` messages is what bounds this.
DEFAULT_CONCURRENCY = 100


def patch() -> None:
    """Green the standard library, before the app and its libraries are imported, so that they
    and the worker's own broker and backend I/O yield to the hub instead of blocking it."""
    import eventlet

    eventlet.monkey_patch()


@hookimpl
def kq_pools() -> list[PoolSpec]:
    return [
        PoolSpec(
            name="eventlet",
            factory=lazy("kq_eventlet.pool:EventletPool"),
            capabilities=CAPABILITIES,
            default_concurrency=DEFAULT_CONCURRENCY,
            setup=patch,
            description="a green thread per task (eventlet, monkey-patched); for legacy eventlet apps",
        )
    ]
