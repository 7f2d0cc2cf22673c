"""What is special about the asyncio pool itself: its spec, its bound, grow and shrink."""

from __future__ import annotations

import pytest

from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq.pool import PoolContext
from kq.testing.contracts.pool import Feeder, Probe, Recorder, make_job
from kq_asyncio import DEFAULT_CONCURRENCY, AsyncioPool


def test_spec_declares_async_tasks_and_a_default_for_io_bound_work() -> None:
    spec = get_plugins().pools.get("asyncio")
    assert spec.capabilities.async_tasks
    assert spec.capabilities.soft_time_limit and spec.capabilities.hard_time_limit
    assert spec.default_concurrency == DEFAULT_CONCURRENCY == 100


def test_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="worker_concurrency"):
        AsyncioPool(PoolContext(concurrency=0, runner=Probe(1)))


def test_grow_and_shrink_move_the_bound() -> None:
    probe = Probe(6)
    pool = AsyncioPool(PoolContext(concurrency=2, runner=probe))
    pool.start()
    recorder = Recorder(pool)
    feeder = Feeder(pool, recorder)
    try:
        pool.grow(4)
        assert pool.concurrency == 6 and pool.free_slots() == 6
        feeder.submit(*(make_job(n, barrier=True) for n in range(6)))
        assert [o.error for _, o in feeder.wait_done(6)] == [None] * 6
        feeder.submit(make_job(7, hold=True), make_job(8, hold=True))
        assert probe.wait_started(8)
        pool.shrink(10)  # two slots are busy: only the idle ones go
        assert pool.concurrency == 2 and pool.free_slots() == 0
        probe.release()
        feeder.wait_done(8)
        pool.shrink(10)
        assert pool.concurrency == 1 and pool.free_slots() == 1
    finally:
        probe.release()
        feeder.close()
        pool.shutdown(wait=True)
