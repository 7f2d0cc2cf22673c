"""kq-solo: the ``solo`` pool, which runs each task in the worker's own thread."""

from __future__ import annotations

from kq import hookimpl
from kq.pool import PoolSpec

from .pool import SoloPool

__all__ = ["SoloPool", "kq_pools"]


@hookimpl
def kq_pools() -> list[PoolSpec]:
    return [
        PoolSpec(
            name="solo",
            factory=SoloPool,
            default_concurrency=1,
            description="one task at a time in the worker's own thread; simplest to debug",
        )
    ]
