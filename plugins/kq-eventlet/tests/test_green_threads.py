"""What is special about eventlet's pool: its limits, kills, autoscale, many waits at once.

Runs greened, from ``test_patched.py``, so ``time.sleep``, ``threading`` and ``queue`` below are
eventlet's green versions: the tests need no eventlet API of their own.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from kq.exceptions import SoftTimeLimitExceeded
from kq.plugins import get_plugins
from kq.pool import Job, Outcome, Pool, PoolContext
from kq.states import FAILURE, SUCCESS
from kq.testing.contracts.pool import Recorder, make_job, wait_until

patcher = sys.modules.get("eventlet.patcher")
if patcher is None or not patcher.is_monkey_patched("thread"):
    pytest.skip("runs monkey-patched, from test_patched.py", allow_module_level=True)


def body(job: Job) -> Outcome:
    """Stands in for the runner and a task: sleeps ``sleep`` seconds; with ``catch_soft`` it
    catches its soft limit and sleeps as long again. Its outcome's error says how it ended."""
    kwargs = job.message.kwargs
    begin = time.perf_counter()
    note = "finished"
    try:
        time.sleep(kwargs.get("sleep", 0))
    except SoftTimeLimitExceeded:
        if not kwargs.get("catch_soft"):
            raise
        note = "caught SoftTimeLimitExceeded"
        time.sleep(kwargs["sleep"])
    return Outcome(job.message.id, SUCCESS, time.perf_counter() - begin, error=note)


@pytest.fixture
def pools() -> Iterator[Callable[..., Pool]]:
    made: list[Pool] = []

    def make(runner: Callable[[Job], Outcome] = body, concurrency: int = 2) -> Pool:
        factory = get_plugins().pools.get("eventlet").factory
        pool = factory(PoolContext(concurrency=concurrency, runner=runner))
        pool.start()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.shutdown(wait=False)


LIMITS: dict[str, tuple[dict[str, float], dict[str, Any], str, str]] = {
    # case: (job limits, body kwargs, outcome state, how the outcome's error starts)
    "soft not reached": ({"soft_time_limit": 0.5}, {"sleep": 0.1}, SUCCESS, "finished"),
    "soft caught": (
        {"soft_time_limit": 0.2},
        {"sleep": 0.3, "catch_soft": True},
        SUCCESS,
        "caught SoftTimeLimitExceeded",
    ),
    "soft uncaught": (
        {"soft_time_limit": 0.2},
        {"sleep": 30},
        FAILURE,
        "SoftTimeLimitExceeded: soft time limit",
    ),
    # Not declared (the worker warns): a job's hard limit is left alone.
    "hard not enforced": ({"time_limit": 0.1}, {"sleep": 0.3}, SUCCESS, "finished"),
}


@pytest.mark.parametrize("case", list(LIMITS))
def test_limits(pools, case: str) -> None:
    limits, behaviour, state, error = LIMITS[case]
    pool = pools()
    recorder = Recorder(pool)
    pool.submit(attrs.evolve(make_job(1, **behaviour), **limits), recorder.on_done)
    [(_, outcome)] = recorder.wait_for(1)
    assert outcome.state == state and outcome.error and outcome.error.startswith(error), outcome
    assert outcome.runtime < 5 and recorder.slots_at_done == [2]


def test_the_limit_is_cancelled_when_the_runner_returns(pools) -> None:
    reported: list[int] = []

    def slow_report(job: Job, outcome: Outcome) -> None:
        time.sleep(0.5)  # a limit still armed would interrupt this
        reported.append(job.ticket)

    pools().submit(attrs.evolve(make_job(7), soft_time_limit=0.1), slow_report)
    assert wait_until(lambda: reported == [7], timeout=5)


def test_a_thousand_waiting_jobs_run_at_once(pools) -> None:
    pool = pools(concurrency=1000)
    recorder = Recorder(pool)
    begin = time.monotonic()
    for ticket in range(1000):
        pool.submit(make_job(ticket, sleep=0.5), recorder.on_done)
    assert len(recorder.wait_for(1000, timeout=30)) == 1000
    assert time.monotonic() - begin < 10  # one after another: 500 s


def test_shutdown_without_wait_kills_running_jobs_and_reports_none(pools) -> None:
    cleaned = threading.Event()

    def cleans_up(job: Job) -> Outcome:
        try:
            time.sleep(30)
        finally:
            cleaned.set()
        raise AssertionError("not killed")

    pool = pools(cleans_up)
    recorder = Recorder(pool)
    pool.submit(make_job(1), recorder.on_done)
    time.sleep(0.05)
    pool.shutdown(wait=False)
    assert not cleaned.is_set(), "the kill ran before shutdown returned"
    assert cleaned.wait(5)
    time.sleep(0.1)
    assert recorder.calls == []


def test_grow_and_shrink_move_the_limit_never_below_busy_or_one(pools) -> None:
    gate = threading.Event()

    def held(job: Job) -> Outcome:
        gate.wait(10)
        return Outcome(job.message.id, SUCCESS, 0.0)

    pool = pools(held)
    recorder = Recorder(pool)
    for ticket in (1, 2):
        pool.submit(make_job(ticket), recorder.on_done)
    pool.grow(3)
    assert (pool.concurrency, pool.free_slots()) == (5, 3)
    pool.shrink(10)
    assert (pool.concurrency, pool.free_slots()) == (2, 0)
    gate.set()
    recorder.wait_for(2)
    pool.shrink(10)
    assert (pool.concurrency, pool.free_slots()) == (1, 1)
