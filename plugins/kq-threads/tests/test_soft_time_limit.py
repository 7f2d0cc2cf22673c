"""Soft time limits in threads: raised in the task's thread, never in the job after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import attrs
import pytest

from kq import App
from kq.exceptions import SoftTimeLimitExceeded
from kq.pool import Job, Outcome, PoolContext
from kq.states import FAILURE, SUCCESS
from kq.testing.contracts.pool import Recorder, make_job
from kq.testing.worker import worker_thread
from kq_threads import ThreadPool
from kq_threads.watchdog import Watchdog


def spin(seconds: float) -> None:
    """Compute in Python for ``seconds``: the async exception arrives within a bytecode."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += 1


class Script:
    """A runner whose jobs spin (``spin=s``) or sleep in C (``sleep=s``), catching the limit."""

    def __init__(self) -> None:
        self.caught: dict[int, float] = {}  # ticket -> seconds after start the limit arrived
        self.threads: dict[int, int] = {}

    def __call__(self, job: Job) -> Outcome:
        begin = time.monotonic()
        self.threads[job.ticket] = threading.get_ident()
        kwargs = job.message.kwargs
        try:
            spin(kwargs.get("spin", 0))
            time.sleep(kwargs.get("sleep", 0))
        except SoftTimeLimitExceeded:
            self.caught[job.ticket] = time.monotonic() - begin
            return Outcome(job.message.id, SUCCESS, 0.0, error="cleaned up")
        return Outcome(job.message.id, SUCCESS, 0.0)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def pool(script: Script) -> Iterator[ThreadPool]:
    pool = ThreadPool(PoolContext(concurrency=2, runner=script))
    pool.start()
    yield pool
    pool.shutdown(wait=True)


def limited(ticket: int, soft: float | None, **behaviour: float) -> Job:
    return attrs.evolve(make_job(ticket, **behaviour), soft_time_limit=soft)


def test_the_limit_is_raised_inside_a_task_computing_in_python(pool: ThreadPool, script: Script) -> None:
    recorder = Recorder(pool)
    pool.submit(limited(1, 0.2, spin=10), recorder.on_done)
    [(_, outcome)] = recorder.wait_for(1)
    assert outcome.error == "cleaned up"
    assert 0.2 <= script.caught[1] < 2.0


def test_a_long_c_call_is_interrupted_only_when_it_returns(pool: ThreadPool, script: Script) -> None:
    recorder = Recorder(pool)
    pool.submit(limited(1, 0.1, sleep=0.6, spin=0.0), recorder.on_done)
    recorder.wait_for(1)
    assert script.caught[1] >= 0.6


def test_a_job_that_ends_in_time_is_not_interrupted(pool: ThreadPool, script: Script) -> None:
    recorder = Recorder(pool)
    pool.submit(limited(1, 5.0, spin=0.05), recorder.on_done)
    [(_, outcome)] = recorder.wait_for(1)
    assert outcome.error is None and script.caught == {}


def test_a_limit_firing_as_its_job_ends_never_reaches_the_next_job(script: Script) -> None:
    """Jobs end right at their limit, so fires race with disarming; the unlimited job after
    each one spins in Python on the same thread and must never see the exception."""
    pool = ThreadPool(PoolContext(concurrency=1, runner=script))
    pool.start()
    recorder = Recorder(pool)
    try:
        for n in range(150):
            pool.submit(limited(2 * n, 0.004, spin=0.004), recorder.on_done)
            pool.submit(limited(2 * n + 1, None, spin=0.006), recorder.on_done)
        calls = recorder.wait_for(300, timeout=60)
    finally:
        pool.shutdown(wait=True)
    assert len(calls) == 300
    unlimited = [outcome for job, outcome in calls if job.ticket % 2]
    assert [outcome.error for outcome in unlimited] == [None] * 150
    hit = sorted(ticket for ticket in script.caught if ticket % 2)
    assert hit == [], f"unlimited jobs interrupted: {hit}"
    # A 4 ms limit may fire before the runner even starts, on a loaded machine: then the
    # job fails with it, and the thread goes on.
    for _, outcome in calls:
        assert outcome.state == SUCCESS or outcome.error == "SoftTimeLimitExceeded: ", outcome
    assert len(set(script.threads.values())) == 1  # one thread ran them all, and survived
    assert any(ticket % 2 == 0 for ticket in script.caught), "no limit fired in time"


def test_one_watchdog_thread_serves_every_job(pool: ThreadPool) -> None:
    def watchdogs() -> int:
        return sum(t.name == "kq-threads-watchdog" for t in threading.enumerate())

    recorder = Recorder(pool)
    pool.submit(limited(1, None), recorder.on_done)
    recorder.wait_for(1)
    assert watchdogs() == 0, "started for a job without a limit"
    for ticket in range(2, 42):
        pool.submit(limited(ticket, 5.0), recorder.on_done)
        recorder.wait_for(ticket)
    assert watchdogs() == 1


def test_disarmed_alarms_do_not_pile_up() -> None:
    watchdog = Watchdog("kq-test-watchdog")
    try:
        for _ in range(10_000):
            watchdog.disarm(watchdog.arm(3600))
        assert len(watchdog._heap) < 200
    finally:
        watchdog.stop()


def test_a_real_task_catches_the_limit_and_an_uncaught_one_fails(kq_app: App) -> None:
    @kq_app.task(name="t.patient", soft_time_limit=0.3)
    def patient() -> str:
        try:
            spin(30)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "never"

    @kq_app.task(name="t.careless", soft_time_limit=0.3)
    def careless() -> None:
        spin(30)

    with worker_thread(kq_app, pool="threads", concurrency=2):
        assert patient.delay().get(timeout=30) == "cleaned up"
        result = careless.delay()
        with pytest.raises(SoftTimeLimitExceeded):
            result.get(timeout=30)
        assert result.state == FAILURE
