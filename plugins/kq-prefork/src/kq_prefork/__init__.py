"""kq-prefork: the ``prefork`` pool, which runs tasks in child processes (billiard).

Every kq process imports this module, so it declares the pool without importing it: billiard and
:mod:`kq_prefork.pool` are imported when a worker makes a prefork pool.
"""

from __future__ import annotations

from kq import hookimpl
from kq.pool import PoolCapabilities, PoolSpec
from kq.specs import lazy

__all__ = ["CAPABILITIES", "kq_pools"]

CAPABILITIES = PoolCapabilities(
    soft_time_limit=True,
    hard_time_limit=True,
    max_tasks_per_child=True,
    autoscale=True,
    processes=True,
    terminate=True,
)


@hookimpl
def kq_pools() -> list[PoolSpec]:
    return [
        PoolSpec(
            name="prefork",
            factory=lazy("kq_prefork.pool:PreforkPool"),
            capabilities=CAPABILITIES,
            default_concurrency=None,  # one process per CPU
            description="child processes (billiard) with time limits and child recycling; "
            "for CPU-bound tasks",
        )
    ]
