"""shrink retires real threads (the contract checks the slots; this checks the threads)."""

from __future__ import annotations

import threading

from kq.pool import PoolContext
from kq.testing.contracts.pool import Probe, Recorder, make_job, wait_until
from kq_threads import ThreadPool


def pool_threads() -> int:
    return sum(t.name.startswith("kq-threads-") and t.name[11:].isdigit() for t in threading.enumerate())


def test_shrink_retires_idle_threads_only_and_keeps_one() -> None:
    before = pool_threads()
    probe = Probe(4)
    pool = ThreadPool(PoolContext(concurrency=4, runner=probe))
    pool.start()
    recorder = Recorder(pool)
    try:
        for ticket in (1, 2):
            pool.submit(make_job(ticket, hold=True), recorder.on_done)
        assert probe.wait_started(2)
        pool.shrink(10)  # two slots are busy: only the two idle ones go
        assert pool.concurrency == 2 and pool.free_slots() == 0
        assert wait_until(lambda: pool_threads() == before + 2)
        probe.release()
        recorder.wait_for(2)
        pool.shrink(10)
        assert pool.concurrency == 1 and pool.free_slots() == 1
        assert wait_until(lambda: pool_threads() == before + 1)
        pool.submit(make_job(3), recorder.on_done)  # the last thread still works
        assert len(recorder.wait_for(3)) == 3
    finally:
        probe.release()
        pool.shutdown(wait=True)
    assert wait_until(lambda: pool_threads() == before)
