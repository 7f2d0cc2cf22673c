"""The pool contract: what every pool plugin must do, checked with real threads and real time.

Use it by subclassing and naming the pool (as ``kq worker --pool`` would)::

    import pytest
    from kq.testing.contracts import PoolContract

    class TestMyPool(PoolContract):
        @pytest.fixture
        def pool_name(self) -> str:
            return "mypool"

Optional fixtures to override:

- ``concurrency`` (default 4): what the pool is created with. A pool that always runs one job
  at a time (solo) returns 1 here.
- ``pool_options`` (default ``{}``): the :attr:`~kq.pool.PoolContext.options` it gets.
- ``abandons_running_jobs`` (default ``True``): return ``False`` if ``shutdown(wait=False)``
  cannot return while a job is still running; the suite then checks that it returns promptly
  once the job has ended, instead of while it runs.

The suite drives the pool the way the worker does: one thread submits, and only while
``free_slots()`` is positive (:class:`Feeder`). Jobs run :class:`Probe`, a runner that does
what the job's kwargs ask (sleep, hold until released, meet at a barrier, raise) and records
what it saw, so tests can tell how many jobs ran at once and in which thread. A pool's own
tests can reuse :class:`Probe`, :class:`Recorder`, :class:`Feeder` and :func:`make_job`.

Pools that declare ``processes`` run jobs with a runner rebuilt in each child from the app, so
this in-process probe cannot reach them yet; the suite skips them with a message.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from kq.exceptions import PoolClosed
from kq.plugins import get_plugins
from kq.pool import Job, Outcome, Pool, PoolCapabilities, PoolContext, PoolSpec
from kq.protocol import TaskMessage
from kq.states import FAILURE, SUCCESS

__all__ = [
    "Feeder", "PoolContract", "Probe", "Recorder", "assert_refuses_work", "make_job", "wait_until",
]

#: Longest any single wait in the suite lasts; only reached when a pool is broken.
WAIT = 10.0
#: Longest a held job or a barrier waits before giving up, so a broken test still ends.
HOLD = 5.0
#: ``shutdown(wait=False)`` must return within this, while a job is held for :data:`HOLD`.
PROMPT = 2.0


def make_job(ticket: int, **behaviour: Any) -> Job:
    """A job for :class:`Probe`; ``behaviour`` becomes the message kwargs it acts on."""
    message = TaskMessage(id=uuid.uuid4().hex, task="kq.contract.probe", kwargs=behaviour)
    return Job(message=message, queue="kq-contract", ticket=ticket)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


class Probe:
    """The suite's runner. A job's kwargs say what to do:

    ``sleep=seconds``; ``hold=True`` (wait until :meth:`release`); ``barrier=True`` (wait
    until ``concurrency`` jobs are at the barrier at once); ``raise_="text"`` (raise
    ``RuntimeError(text)``, which a real runner never does). It returns SUCCESS, or FAILURE if
    a hold or barrier timed out, and records the thread, the outcome and the peak of jobs
    running at once.
    """

    def __init__(self, concurrency: int) -> None:
        self.barrier = threading.Barrier(concurrency)
        self._gate = threading.Event()
        self._cond = threading.Condition()
        self.started = 0
        self.active = 0
        self.max_active = 0
        #: ticket -> ident of the thread that ran the job.
        self.threads: dict[int, int] = {}
        #: ticket -> the outcome this runner returned.
        self.returned: dict[int, Outcome] = {}

    def __call__(self, job: Job) -> Outcome:
        begin = time.perf_counter()
        with self._cond:
            self.started += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads[job.ticket] = threading.get_ident()
            self._cond.notify_all()
        try:
            error = self._act(job.message.kwargs)
        finally:
            with self._cond:
                self.active -= 1
        state = FAILURE if error else SUCCESS
        outcome = Outcome(job.message.id, state, time.perf_counter() - begin, error=error)
        with self._cond:
            self.returned[job.ticket] = outcome
        return outcome

    def _act(self, kwargs: Mapping[str, Any]) -> str | None:
        if "raise_" in kwargs:
            raise RuntimeError(kwargs["raise_"])
        if kwargs.get("barrier"):
            try:
                self.barrier.wait(HOLD)
            except threading.BrokenBarrierError:
                return "fewer jobs than concurrency ran at once"
        if kwargs.get("hold") and not self._gate.wait(HOLD):
            return "held job was never released"
        time.sleep(kwargs.get("sleep", 0))
        return None

    def wait_started(self, count: int, timeout: float = WAIT) -> bool:
        """Wait until ``count`` jobs have started running."""
        with self._cond:
            return self._cond.wait_for(lambda: self.started >= count, timeout)

    def release(self) -> None:
        """Let held jobs finish, and free any job waiting at the barrier."""
        self._gate.set()
        self.barrier.abort()


class Recorder:
    """Collects ``on_done`` calls, and what ``free_slots()`` said during each one.

    Set :attr:`delay` to make each call take that long before it records, so that a pool that
    returns from ``shutdown(wait=True)`` while a report is still under way is caught.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.delay = 0.0
        self.calls: list[tuple[Job, Outcome]] = []
        self.slots_at_done: list[int] = []
        self._cond = threading.Condition()

    def on_done(self, job: Job, outcome: Outcome) -> None:
        slots = self.pool.free_slots()
        time.sleep(self.delay)
        with self._cond:
            self.calls.append((job, outcome))
            self.slots_at_done.append(slots)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[tuple[Job, Outcome]]:
        """Wait until ``count`` jobs were reported; return the calls so far, in order."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)


class Feeder:
    """Submits jobs from one thread, as the worker does: only while ``free_slots()`` > 0.

    Submitting from a thread of its own keeps the test thread free to watch the pool, even
    for a pool whose ``submit`` runs the job before returning (solo).
    """

    def __init__(self, pool: Pool, recorder: Recorder) -> None:
        self.pool = pool
        self.recorder = recorder
        self.error: BaseException | None = None
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="kq-contract-feeder", daemon=True)
        self._thread.start()

    def submit(self, *jobs: Job) -> None:
        for job in jobs:
            self._jobs.put(job)

    def wait_done(self, count: int) -> list[tuple[Job, Outcome]]:
        """Wait until ``count`` jobs were reported, failing the test if they are not."""
        calls = self.recorder.wait_for(count)
        assert self.error is None, f"submitting failed: {self.error!r}"
        assert len(calls) >= count, f"only {len(calls)} of {count} jobs reached on_done"
        return calls

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(WAIT)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not wait_until(lambda: self.pool.free_slots() > 0):
                self.error = AssertionError(f"free_slots() stayed 0 for {WAIT} s")
                return
            try:
                self.pool.submit(job, self.recorder.on_done)
            except BaseException as exc:  # recorded for wait_done() to report
                self.error = exc
                return


def assert_refuses_work(pool: Pool) -> None:
    """After shutdown ``submit`` raises :class:`~kq.exceptions.PoolClosed` saying why."""
    with pytest.raises(PoolClosed) as info:
        pool.submit(make_job(0), lambda job, outcome: None)
    assert str(info.value), "PoolClosed raised without a message"


class PoolContract:
    """Tests every pool plugin must pass. Subclasses provide ``pool_name``."""

    @pytest.fixture
    def pool_name(self) -> str:
        raise NotImplementedError("a PoolContract subclass must provide pool_name")

    @pytest.fixture
    def concurrency(self) -> int:
        return 4

    @pytest.fixture
    def pool_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def abandons_running_jobs(self) -> bool:
        return True

    @pytest.fixture
    def pool_spec(self, pool_name: str) -> PoolSpec:
        return get_plugins().pools.get(pool_name)

    @pytest.fixture
    def probe(self, concurrency: int) -> Iterator[Probe]:
        probe = Probe(concurrency)
        yield probe
        probe.release()

    @pytest.fixture
    def pool(
        self, pool_spec: PoolSpec, concurrency: int, pool_options: dict[str, Any], probe: Probe
    ) -> Iterator[Pool]:
        """A started pool running :class:`Probe`, shut down (after releasing it) at the end."""
        if pool_spec.capabilities.processes:
            pytest.skip("the pool contract cannot reach jobs in child processes yet")
        pool = pool_spec.factory(
            PoolContext(concurrency=concurrency, runner=probe, options=pool_options)
        )
        pool.start()
        yield pool
        probe.release()
        pool.shutdown(wait=True)

    @pytest.fixture
    def recorder(self, pool: Pool) -> Recorder:
        return Recorder(pool)

    @pytest.fixture
    def feeder(self, pool: Pool, recorder: Recorder, probe: Probe) -> Iterator[Feeder]:
        feeder = Feeder(pool, recorder)
        yield feeder
        probe.release()
        feeder.close()

    # -- declaration ----------------------------------------------------------------------

    def test_spec_is_declared(self, pool_spec: PoolSpec, pool_name: str) -> None:
        assert pool_spec.name == pool_name
        assert isinstance(pool_spec.capabilities, PoolCapabilities)
        assert callable(pool_spec.factory)
        default = pool_spec.default_concurrency
        assert default is None or (isinstance(default, int) and default >= 1)

    def test_pool_agrees_with_its_spec(
        self, pool: Pool, pool_spec: PoolSpec, concurrency: int
    ) -> None:
        assert isinstance(pool, Pool)
        assert pool.capabilities == pool_spec.capabilities, "the class and the spec disagree"
        assert pool.concurrency == concurrency
        assert pool.free_slots() == concurrency

    # -- running and reporting ------------------------------------------------------------

    def test_every_job_is_reported_once_with_its_ticket(
        self, feeder: Feeder, recorder: Recorder, probe: Probe
    ) -> None:
        jobs = {ticket: make_job(ticket, sleep=0.001 * (ticket % 3)) for ticket in range(1, 101)}
        feeder.submit(*jobs.values())
        feeder.wait_done(len(jobs))
        time.sleep(0.1)  # a second report of any job would arrive by now
        calls = recorder.calls
        assert sorted(job.ticket for job, _ in calls) == sorted(jobs)
        for job, outcome in calls:
            assert job == jobs[job.ticket]
            assert outcome.task_id == job.message.id
            assert outcome == probe.returned[job.ticket]
            assert outcome.state == SUCCESS

    def test_a_job_slot_is_free_when_its_on_done_runs(
        self, feeder: Feeder, recorder: Recorder, concurrency: int
    ) -> None:
        """The worker refills from the report; a slot still taken then delays the next job."""
        feeder.submit(make_job(1))
        feeder.wait_done(1)
        assert recorder.slots_at_done == [concurrency]

    def test_free_slots_follow_running_jobs(
        self, pool: Pool, feeder: Feeder, probe: Probe, concurrency: int
    ) -> None:
        assert pool.free_slots() == concurrency
        for running in range(1, concurrency + 1):
            feeder.submit(make_job(running, hold=True))
            assert probe.wait_started(running), f"job {running} never started"
            assert pool.free_slots() == concurrency - running
        probe.release()
        feeder.wait_done(concurrency)
        assert wait_until(lambda: pool.free_slots() == concurrency)

    def test_runs_concurrency_jobs_at_once(self, feeder: Feeder, concurrency: int) -> None:
        feeder.submit(*(make_job(n, barrier=True) for n in range(concurrency)))
        calls = feeder.wait_done(concurrency)
        assert [outcome.error for _, outcome in calls] == [None] * concurrency

    def test_never_runs_more_than_concurrency(
        self, pool: Pool, feeder: Feeder, probe: Probe, concurrency: int
    ) -> None:
        count = 5 * concurrency
        feeder.submit(*(make_job(n, sleep=0.005) for n in range(count)))
        feeder.wait_done(count)
        assert probe.max_active <= concurrency
        assert wait_until(lambda: pool.free_slots() == concurrency)

    def test_a_raising_runner_is_reported_and_the_pool_survives(
        self, pool: Pool, feeder: Feeder, concurrency: int
    ) -> None:
        feeder.submit(*(make_job(n, raise_=f"probe bug {n}") for n in range(concurrency)))
        for job, outcome in feeder.wait_done(concurrency):
            assert outcome.task_id == job.message.id
            assert outcome.state == FAILURE
            assert outcome.error and f"probe bug {job.ticket}" in outcome.error
            assert outcome.runtime >= 0
        # Every slot still works: all of them must meet at the barrier at once.
        feeder.submit(*(make_job(n, barrier=True) for n in range(concurrency)))
        calls = feeder.wait_done(2 * concurrency)[concurrency:]
        assert [outcome.error for _, outcome in calls] == [None] * concurrency
        assert wait_until(lambda: pool.free_slots() == concurrency)

    # -- shutdown -------------------------------------------------------------------------

    def test_shutdown_with_wait_lets_running_jobs_finish(
        self, pool: Pool, feeder: Feeder, recorder: Recorder, probe: Probe, concurrency: int
    ) -> None:
        recorder.delay = 0.05
        feeder.submit(*(make_job(n, hold=True) for n in range(concurrency)))
        assert probe.wait_started(concurrency)
        release = threading.Timer(0.2, probe.release)
        release.start()
        try:
            pool.shutdown(wait=True)
            reported = list(recorder.calls)
        finally:
            release.join()
        assert len(reported) == concurrency, "shutdown(wait=True) returned before on_done"
        assert all(outcome.state == SUCCESS for _, outcome in reported)
        assert_refuses_work(pool)

    def test_shutdown_without_wait_returns_promptly(
        self, pool: Pool, feeder: Feeder, recorder: Recorder, probe: Probe,
        abandons_running_jobs: bool,
    ) -> None:
        feeder.submit(make_job(1, hold=True))
        assert probe.wait_started(1)
        releaser = threading.Timer(0.2, probe.release)
        if not abandons_running_jobs:
            releaser.start()
        begin = time.monotonic()
        pool.shutdown(wait=False)
        elapsed = time.monotonic() - begin
        still_running = probe.active
        releaser.cancel()
        probe.release()
        assert elapsed < PROMPT, f"shutdown(wait=False) took {elapsed:.1f} s"
        if abandons_running_jobs:
            assert still_running == 1, "shutdown(wait=False) waited for the running job"
        assert_refuses_work(pool)
        time.sleep(0.2)
        assert len(recorder.calls) <= 1, "an abandoned job was reported more than once"

    @pytest.mark.parametrize("wait", [True, False], ids=["wait", "nowait"])
    def test_a_shut_down_pool_refuses_work(self, pool: Pool, wait: bool) -> None:
        pool.shutdown(wait=wait)
        assert_refuses_work(pool)

    def test_shutdown_twice_is_harmless(self, pool: Pool) -> None:
        """A second signal turns a warm shutdown into a cold one: the worker calls again."""
        pool.shutdown(wait=True)
        pool.shutdown(wait=False)
        pool.shutdown(wait=True)
        assert_refuses_work(pool)

