"""What is special about gevent: time limits, kills, autoscale, many waits at once.

Runs monkey-patched, from ``test_patched.py``: ``time.sleep`` here must yield to the hub.
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable, Iterator

import attrs
import gevent
import pytest
from gevent import monkey
from gevent.event import Event

from kq.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kq.pool import Job, Outcome, PoolContext, report_lost
from kq.states import FAILURE, SUCCESS
from kq.testing.contracts.pool import Recorder, make_job, wait_until
from kq_gevent.pool import GeventPool

if not monkey.is_module_patched("threading"):
    pytest.skip("runs monkey-patched, from test_patched.py", allow_module_level=True)

Runner = Callable[[Job], Outcome]


def task(job: Job) -> Outcome:
    """A runner standing in for a task body: sleeps ``sleep`` seconds; with ``catch_soft`` it
    catches its soft limit and sleeps ``after_soft`` more. Its outcome's error says how it ended."""
    kwargs = job.message.kwargs
    begin = time.perf_counter()
    try:
        time.sleep(kwargs.get("sleep", 0))
        note = "finished"
    except SoftTimeLimitExceeded:
        if not kwargs.get("catch_soft"):
            raise
        note = "caught soft limit"
        time.sleep(kwargs.get("after_soft", 0))
    return Outcome(job.message.id, SUCCESS, time.perf_counter() - begin, error=note)


class Lost:
    """Stands in for the kernel's ``lost`` policy and records what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Job, BaseException, float]] = []

    def __call__(self, job: Job, exc: BaseException, runtime: float) -> Outcome:
        self.calls.append((job, exc, runtime))
        return Outcome(job.message.id, FAILURE, runtime, error=f"lost: {exc}")


@pytest.fixture
def pools() -> Iterator[Callable[..., GeventPool]]:
    made: list[GeventPool] = []

    def make(
        runner: Runner = task, concurrency: int = 2, lost: Callable[..., Outcome] = report_lost
    ) -> GeventPool:
        pool = GeventPool(PoolContext(concurrency=concurrency, runner=runner, lost=lost))
        pool.start()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.shutdown(wait=False)


def limited(
    ticket: int, time_limit: float | None = None, soft_time_limit: float | None = None, **behaviour: object
) -> Job:
    return attrs.evolve(make_job(ticket, **behaviour), time_limit=time_limit, soft_time_limit=soft_time_limit)


def test_a_hard_time_limit_stops_the_job_and_the_kernel_decides(pools) -> None:
    lost = Lost()
    pool = pools(lost=lost)
    recorder = Recorder(pool)
    pool.submit(limited(1, time_limit=0.3, sleep=30), recorder.on_done)
    [(job, outcome)] = recorder.wait_for(1)
    [(lost_job, exc, runtime)] = lost.calls
    assert lost_job is job and isinstance(exc, TimeLimitExceeded)
    assert "hard time limit (0.3 s)" in str(exc)
    assert 0.3 <= runtime < 2
    assert outcome.error == f"lost: {exc}"
    assert recorder.slots_at_done == [2]
    pool.submit(make_job(2), recorder.on_done)  # the slot works again
    assert recorder.wait_for(2)[1][1].state == SUCCESS


def test_a_hard_time_limit_gets_through_except_exception(pools) -> None:
    def stubborn(job: Job) -> Outcome:
        try:
            time.sleep(30)
        except Exception:
            time.sleep(30)
        raise AssertionError("not stopped")

    lost = Lost()
    pool = pools(stubborn, lost=lost)
    recorder = Recorder(pool)
    begin = time.monotonic()
    pool.submit(limited(1, time_limit=0.2), recorder.on_done)
    assert recorder.wait_for(1)[0][1].state == FAILURE
    assert time.monotonic() - begin < 5 and len(lost.calls) == 1


def test_without_a_lost_policy_a_hard_limit_is_reported_as_a_failure(pools) -> None:
    pool = pools()
    recorder = Recorder(pool)
    pool.submit(limited(1, time_limit=0.2, sleep=30), recorder.on_done)
    [(_, outcome)] = recorder.wait_for(1)
    assert outcome.state == FAILURE
    assert outcome.error and outcome.error.startswith("TimeLimitExceeded: hard time limit")


def test_a_soft_time_limit_is_raised_inside_the_task(pools) -> None:
    pool = pools()
    recorder = Recorder(pool)
    pool.submit(limited(1, soft_time_limit=0.2, sleep=30, catch_soft=True), recorder.on_done)
    [(_, outcome)] = recorder.wait_for(1)
    assert (outcome.state, outcome.error) == (SUCCESS, "caught soft limit")
    assert 0.2 <= outcome.runtime < 2


def test_an_uncaught_soft_time_limit_fails_the_task(pools) -> None:
    pool = pools()
    recorder = Recorder(pool)
    pool.submit(limited(1, soft_time_limit=0.2, sleep=30), recorder.on_done)
    [(_, outcome)] = recorder.wait_for(1)
    assert outcome.state == FAILURE
    assert outcome.error and outcome.error.startswith("SoftTimeLimitExceeded: soft time limit")


def test_a_task_that_carries_on_after_its_soft_limit_meets_the_hard_one(pools) -> None:
    lost = Lost()
    pool = pools(lost=lost)
    recorder = Recorder(pool)
    job = limited(1, time_limit=0.5, soft_time_limit=0.2, sleep=30, catch_soft=True, after_soft=30)
    pool.submit(job, recorder.on_done)
    recorder.wait_for(1)
    [(_, exc, runtime)] = lost.calls
    assert isinstance(exc, TimeLimitExceeded) and 0.5 <= runtime < 2


def test_a_computing_task_gets_its_soft_limit_and_the_timer_stops_after(pools) -> None:
    """No yield, so no hub: the watchdog raises it, and stops ticking once no job has limits."""

    def computes(job: Job) -> Outcome:
        begin = time.perf_counter()
        try:
            while time.perf_counter() - begin < 10:
                pass
        except SoftTimeLimitExceeded:
            return Outcome(job.message.id, SUCCESS, time.perf_counter() - begin, error="caught")
        return Outcome(job.message.id, FAILURE, time.perf_counter() - begin, error="not stopped")

    pool = pools(computes)
    recorder = Recorder(pool)
    pool.submit(limited(1, soft_time_limit=0.3), recorder.on_done)
    [(_, outcome)] = recorder.wait_for(1, timeout=15)
    assert outcome.error == "caught" and 0.3 <= outcome.runtime < 2
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)


def test_limits_end_with_their_job(pools) -> None:
    """The greenlet goes on to report after the runner returns: no limit may fire then."""
    survived: list[int] = []

    def slow_report(job: Job, outcome: Outcome) -> None:
        time.sleep(0.5)
        survived.append(job.ticket)

    pool = pools()
    pool.submit(limited(1, time_limit=0.2, soft_time_limit=0.1), slow_report)
    assert wait_until(lambda: survived == [1], timeout=5)


def test_a_thousand_waiting_jobs_run_at_once(pools) -> None:
    pool = pools(concurrency=1000)
    recorder = Recorder(pool)
    begin = time.monotonic()
    for ticket in range(1000):
        pool.submit(make_job(ticket, sleep=0.5), recorder.on_done)
    assert len(recorder.wait_for(1000, timeout=30)) == 1000
    assert time.monotonic() - begin < 10  # one after another would take 500 s


def test_on_done_wakes_a_caller_blocked_on_a_simple_queue(pools) -> None:
    """The worker waits for reports in ``queue.SimpleQueue.get(timeout=...)``: patched, that
    wait yields to the hub, so the jobs run and their reports wake it at once."""
    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    pool = pools()
    pool.submit(make_job(1, sleep=0.1), lambda job, outcome: done.put(job.ticket))
    begin = time.monotonic()
    assert done.get(timeout=10) == 1
    assert time.monotonic() - begin < 2


def test_shutdown_without_wait_kills_running_jobs_and_reports_none(pools) -> None:
    cleaned: list[str] = []

    def cleans_up(job: Job) -> Outcome:
        try:
            time.sleep(30)
        finally:
            cleaned.append(job.message.id)
        raise AssertionError("not killed")

    pool = pools(cleans_up)
    recorder = Recorder(pool)
    job = make_job(1)
    pool.submit(job, recorder.on_done)
    gevent.sleep(0.05)
    pool.shutdown(wait=False)
    assert wait_until(lambda: cleaned == [job.message.id], timeout=5)
    gevent.sleep(0.1)
    assert recorder.calls == [] and pool.free_slots() == 0


def test_grow_and_shrink_move_the_limit_never_below_busy_or_one(pools) -> None:
    gate = Event()

    def held(job: Job) -> Outcome:
        gate.wait(10)
        return Outcome(job.message.id, SUCCESS, 0.0)

    pool = pools(held)
    recorder = Recorder(pool)
    pool.submit(make_job(1), recorder.on_done)
    pool.submit(make_job(2), recorder.on_done)
    pool.grow(3)
    assert (pool.concurrency, pool.free_slots()) == (5, 3)
    pool.shrink(10)
    assert (pool.concurrency, pool.free_slots()) == (2, 0)
    gate.set()
    recorder.wait_for(2)
    pool.shrink(10)
    assert (pool.concurrency, pool.free_slots()) == (1, 1)
