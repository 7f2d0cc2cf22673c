"""What is special about solo: jobs run inside ``submit``, in the caller's thread."""

from __future__ import annotations

import threading

import pytest

from kq.plugins import get_plugins
from kq.pool import Job, Outcome, PoolContext
from kq.testing.contracts.pool import Probe, Recorder, assert_refuses_work, make_job
from kq_solo import SoloPool


def solo(runner: Probe | None = None, concurrency: int = 1) -> SoloPool:
    pool = SoloPool(PoolContext(concurrency=concurrency, runner=runner or Probe(1)))
    pool.start()
    return pool


def test_default_concurrency_is_one() -> None:
    assert get_plugins().pools.get("solo").default_concurrency == 1


def test_job_runs_and_is_reported_in_the_submitting_thread_before_submit_returns() -> None:
    probe = Probe(1)
    pool = solo(probe)
    recorder = Recorder(pool)
    job = make_job(1)
    pool.submit(job, recorder.on_done)
    assert [j for j, _ in recorder.calls] == [job]
    assert probe.threads[1] == threading.get_ident()


def test_asked_concurrency_is_ignored() -> None:
    pool = solo(concurrency=8)
    assert pool.concurrency == 1
    assert pool.free_slots() == 1


def test_keyboard_interrupt_stops_the_caller_and_leaves_the_pool_usable() -> None:
    def interrupted(job: Job) -> Outcome:
        raise KeyboardInterrupt

    pool = solo(interrupted)
    recorder = Recorder(pool)
    with pytest.raises(KeyboardInterrupt):
        pool.submit(make_job(1), recorder.on_done)
    assert recorder.calls == []
    assert pool.free_slots() == 1


def test_shutdown_from_inside_the_running_job_does_not_deadlock() -> None:
    """A signal handler runs in the worker's thread, on top of the task it interrupts."""
    probe = Probe(1)

    def signalled(job: Job) -> Outcome:
        pool.shutdown(wait=True)
        return probe(job)

    pool = solo(signalled)
    recorder = Recorder(pool)
    pool.submit(make_job(1), recorder.on_done)
    assert [outcome.error for _, outcome in recorder.calls] == [None]
    assert_refuses_work(pool)
