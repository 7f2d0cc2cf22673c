"""kq-prefork: the ``prefork`` pool, which runs tasks in child processes (billiard)."""

from __future__ import annotations

from kq import hookimpl
from kq.pool import PoolSpec

from .pool import PreforkOptions, PreforkPool

__all__ = ["PreforkOptions", "PreforkPool", "kq_pools"]


@hookimpl
def kq_pools() -> list[PoolSpec]:
    return [
        PoolSpec(
            name="prefork",
            factory=PreforkPool,
            default_concurrency=None,  # one process per CPU
            description="child processes (billiard) with time limits and child recycling; "
                        "for CPU-bound tasks",
        )
    ]
