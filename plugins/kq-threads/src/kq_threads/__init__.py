"""kq-threads: the ``threads`` pool, which runs tasks in threads."""

from __future__ import annotations

from kq import hookimpl
from kq.pool import PoolSpec

from .pool import DEFAULT_CONCURRENCY, Terminated, ThreadPool

__all__ = ["DEFAULT_CONCURRENCY", "Terminated", "ThreadPool", "kq_pools"]


@hookimpl
def kq_pools() -> list[PoolSpec]:
    return [
        PoolSpec(
            name="threads",
            factory=ThreadPool,
            default_concurrency=DEFAULT_CONCURRENCY,
            description="threads in the worker's process; for I/O-bound tasks; soft time limits, "
            "terminate, autoscale",
        )
    ]
