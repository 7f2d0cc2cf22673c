"""kq-asyncio: the ``asyncio`` pool, which runs ``async def`` tasks natively on an event loop."""

from __future__ import annotations

from kq import hookimpl
from kq.pool import PoolSpec

from .pool import DEFAULT_CONCURRENCY, AsyncioPool

__all__ = ["DEFAULT_CONCURRENCY", "AsyncioPool", "kq_pools"]


@hookimpl
def kq_pools() -> list[PoolSpec]:
    return [
        PoolSpec(
            name="asyncio",
            factory=AsyncioPool,
            default_concurrency=DEFAULT_CONCURRENCY,
            description="async def tasks as coroutines on one event loop; sync tasks in threads",
        )
    ]
