"""What is special about the asyncio pool itself (grow, shrink and the rest are in the contract)."""

from __future__ import annotations

from kq.plugins import get_plugins
from kq_asyncio import DEFAULT_CONCURRENCY


def test_spec_declares_async_tasks_and_a_default_for_io_bound_work() -> None:
    spec = get_plugins().pools.get("asyncio")
    assert spec.capabilities.async_tasks
    assert spec.capabilities.soft_time_limit and spec.capabilities.hard_time_limit
    assert spec.default_concurrency == DEFAULT_CONCURRENCY == 100
