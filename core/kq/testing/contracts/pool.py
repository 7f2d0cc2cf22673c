"""The pool contract: what every pool plugin must do, checked with real threads, processes and time.

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
``free_slots()`` is positive (:class:`Feeder`). Jobs run a *probe*, a runner that does what the
job's kwargs ask (sleep, hold until released, meet at a barrier, raise, compute without end,
wait for its soft time limit) and records what it saw, so tests can tell how many jobs ran at
once and where. A pool's report must be the very Outcome the probe returned.

- Pools whose jobs run in this process (threads, greenlets, an event loop) get :class:`Probe`,
  which records in memory.
- Pools that declare ``capabilities.processes`` get :class:`ProcessProbe`, which records, holds
  and meets through files in the test's ``tmp_path``. A forked child inherits it as
  :attr:`~kq.pool.PoolContext.runner`; it is also picklable, for a pool that starts its
  children fresh: the suite passes no ``app_spec``, so such a pool sends the runner instead.

Every context carries ``lost`` (:class:`LostRecorder`, standing in for the kernel's
:meth:`kq.execution.Runner.lost`): pools call it for a job that hit its hard time limit or
whose process died, and report the Outcome it returns.

Tests of optional features (soft and hard time limits, ``max_tasks_per_child``, autoscale, the
death of a child process, ``terminate``) skip unless the pool's :class:`~kq.pool.PoolCapabilities` declare
them, and must pass when they do. ``make_pool(**context)`` builds a further pool with other
context fields (``max_tasks_per_child=2``). A pool's own tests can reuse :class:`Probe`,
:class:`ProcessProbe`, :class:`LostRecorder`, :class:`Recorder`, :class:`Feeder` and
:func:`make_job`.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from kq.exceptions import (
    PluginError,
    PoolClosed,
    SoftTimeLimitExceeded,
    TaskRevoked,
    TimeLimitExceeded,
    WorkerLostError,
)
from kq.plugins import get_plugins
from kq.pool import Job, Outcome, Pool, PoolCapabilities, PoolContext, PoolSpec
from kq.protocol import TaskMessage
from kq.states import FAILURE, SUCCESS

__all__ = [
    "Feeder",
    "LostRecorder",
    "PoolContract",
    "Probe",
    "ProcessProbe",
    "Recorder",
    "assert_refuses_work",
    "behave",
    "make_job",
    "wait_until",
]

#: Longest any single wait in the suite lasts; only reached when a pool is broken.
WAIT = 10.0
#: Longest a held job or a barrier waits before giving up, so a broken test still ends.
HOLD = 5.0
#: ``shutdown(wait=False)`` must return within this, while a job is held for :data:`HOLD`.
PROMPT = 2.0
#: Longest a ``spin`` job computes; a pool enforcing hard time limits stops it long before.
SPIN = 30.0
#: The limits (seconds) the time-limit tests give their jobs.
SOFT_LIMIT = 0.5
HARD_LIMIT = 1.0


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


def behave(
    kwargs: Mapping[str, Any], hold: Callable[[], bool], meet: Callable[[int | None], bool]
) -> str | None:
    """Do what a probe job's kwargs ask; return why it went wrong, or ``None``.

    ``sleep=seconds``; ``hold=True`` (``hold()`` waits until released); ``barrier=True`` or
    ``barrier=parties`` (``meet(None or parties)`` waits until that many jobs, by default the
    concurrency, are there at once); ``raise_="text"`` (raise ``RuntimeError(text)``, which a
    real runner never does); ``spin=True`` (compute for up to :data:`SPIN` seconds, like
    ``while True: pass``); ``soft=True`` (wait for kq's SoftTimeLimitExceeded, catch it and
    succeed, as a task that cleans up and returns a value); ``die=True`` (SIGKILL the process
    running the job: for process pools only). Shared by both probes, so they only differ in how
    they hold, meet and record.
    """
    if "raise_" in kwargs:
        raise RuntimeError(kwargs["raise_"])
    if kwargs.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    parties = kwargs.get("barrier")
    if parties and not meet(None if parties is True else parties):
        return "fewer jobs than the barrier's parties ran at once"
    if kwargs.get("hold") and not hold():
        return "held job was never released"
    time.sleep(kwargs.get("sleep", 0))
    if kwargs.get("spin"):
        deadline = time.monotonic() + SPIN
        while time.monotonic() < deadline:
            pass
        return f"computed for {SPIN} s and was never stopped"
    if kwargs.get("soft"):
        return _catch_soft_time_limit()
    return None


def _catch_soft_time_limit() -> str | None:
    # Short sleeps: a thread pool's asynchronous exception only gets in between them.
    deadline = time.monotonic() + HOLD
    try:
        while time.monotonic() < deadline:
            time.sleep(0.005)
    except SoftTimeLimitExceeded:
        return None
    return "SoftTimeLimitExceeded was never raised"


class Probe:
    """The suite's runner for jobs that run in this process; see :func:`behave` for what a
    job's kwargs make it do.

    It returns SUCCESS, or FAILURE if a hold or barrier timed out, and records the thread, the
    process, the outcome and the peak of jobs running at once.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.barrier = threading.Barrier(concurrency)
        self._barriers = {concurrency: self.barrier}
        self._gate = threading.Event()
        self._cond = threading.Condition()
        self.started = 0
        self.active = 0
        self.max_active = 0
        #: ticket -> ident of the thread that ran the job.
        self.threads: dict[int, int] = {}
        #: ticket -> id of the process that ran the job.
        self.pids: dict[int, int] = {}
        #: ticket -> the outcome this runner returned.
        self.returned: dict[int, Outcome] = {}

    def __call__(self, job: Job) -> Outcome:
        begin = time.perf_counter()
        with self._cond:
            self.started += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads[job.ticket] = threading.get_ident()
            self.pids[job.ticket] = os.getpid()
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
        return behave(kwargs, lambda: self._gate.wait(HOLD), self._meet)

    def _meet(self, parties: int | None) -> bool:
        with self._cond:
            size = parties or self.concurrency
            barrier = self._barriers.get(size)
            if barrier is None:
                barrier = self._barriers[size] = threading.Barrier(size)
            if self._gate.is_set():
                return False
        try:
            barrier.wait(HOLD)
        except threading.BrokenBarrierError:
            return False
        return True

    def wait_started(self, count: int, timeout: float = WAIT) -> bool:
        """Wait until ``count`` jobs have started running."""
        with self._cond:
            return self._cond.wait_for(lambda: self.started >= count, timeout)

    def release(self) -> None:
        """Let held jobs finish, and free any job waiting at a barrier."""
        self._gate.set()
        with self._cond:
            barriers = list(self._barriers.values())
        for barrier in barriers:
            barrier.abort()


class ProcessProbe:
    """:class:`Probe` for jobs that run in other processes: same kwargs, same views.

    A child process runs its own copy of the runner, so nothing it could keep in memory would
    reach the test. This probe writes a file per job in ``directory`` when the job starts and
    when it ends (with the Outcome it returned); holds wait for a ``release`` file, and barriers
    count arrivals with files created exclusively. The views read the files, so they see every
    process's jobs; a job whose process was killed has started and never ends. Its state is a
    path and a number, so it pickles for pools that start children fresh.
    """

    def __init__(self, concurrency: int, directory: str | os.PathLike[str]) -> None:
        self.concurrency = concurrency
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def __call__(self, job: Job) -> Outcome:
        begin = time.perf_counter()
        key = job.message.id
        self._record(f"start-{key}", (job.ticket, os.getpid(), threading.get_ident(), time.monotonic()))
        outcome = None
        try:
            error = behave(job.message.kwargs, self._hold, self._meet)
            state = FAILURE if error else SUCCESS
            outcome = Outcome(job.message.id, state, time.perf_counter() - begin, error=error)
            return outcome
        finally:
            self._record(f"end-{key}", (job.ticket, time.monotonic(), outcome))

    def _record(self, name: str, value: Any) -> None:
        path = self.directory / name
        temporary = path.with_name(f".{name}")
        temporary.write_bytes(pickle.dumps(value))
        os.replace(temporary, path)  # readers never see half a record

    def _read(self, prefix: str) -> list[Any]:
        return [pickle.loads(path.read_bytes()) for path in self.directory.glob(f"{prefix}-*")]

    def _hold(self) -> bool:
        return wait_until((self.directory / "release").exists, HOLD)

    def _meet(self, parties: int | None) -> bool:
        size = parties or self.concurrency
        arrival = 0
        while True:  # take the first free arrival number, atomically across processes
            try:
                os.close(
                    os.open(self.directory / f"meet-{size}-{arrival}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                )
                break
            except FileExistsError:
                arrival += 1
        last = self.directory / f"meet-{size}-{(arrival // size + 1) * size - 1}"
        released = self.directory / "release"
        wait_until(lambda: last.exists() or released.exists(), HOLD)
        return last.exists()

    @property
    def started(self) -> int:
        return len(list(self.directory.glob("start-*")))

    @property
    def active(self) -> int:
        return self.started - len(list(self.directory.glob("end-*")))

    @property
    def max_active(self) -> int:
        """The peak of jobs running at once, from the start and end times of every job."""
        events = [(at, 1) for _, _, _, at in self._read("start")]
        events += [(at, -1) for _, at, _ in self._read("end")]
        peak = running = 0
        for _, step in sorted(events):  # an end sorts before a start at the same instant
            running += step
            peak = max(peak, running)
        return peak

    @property
    def pids(self) -> dict[int, int]:
        return {ticket: pid for ticket, pid, _, _ in self._read("start")}

    @property
    def threads(self) -> dict[int, int]:
        return {ticket: thread for ticket, _, thread, _ in self._read("start")}

    @property
    def returned(self) -> dict[int, Outcome]:
        return {ticket: outcome for ticket, _, outcome in self._read("end") if outcome}

    def wait_started(self, count: int, timeout: float = WAIT) -> bool:
        """Wait until ``count`` jobs have started running."""
        return wait_until(lambda: self.started >= count, timeout)

    def release(self) -> None:
        """Let held jobs finish, and free any job waiting at a barrier."""
        (self.directory / "release").touch()


class LostRecorder:
    """The suite's :attr:`~kq.pool.PoolContext.lost`: records ``(job, exc, runtime)`` and
    returns a FAILURE outcome naming ``exc`` (:meth:`~kq.pool.Outcome.failed`), as the
    kernel's ``Runner.lost`` does without ``reject_on_worker_lost``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Job, BaseException, float]] = []
        #: ticket -> the outcome returned for it.
        self.returned: dict[int, Outcome] = {}
        self._lock = threading.Lock()

    def __call__(self, job: Job, exc: BaseException, runtime: float = 0.0) -> Outcome:
        outcome = Outcome.failed(job, exc, runtime)
        with self._lock:
            self.calls.append((job, exc, runtime))
            self.returned[job.ticket] = outcome
        return outcome


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


def _require(spec: PoolSpec, capability: str) -> None:
    if not getattr(spec.capabilities, capability):
        pytest.skip(f"the {spec.name} pool does not declare the {capability} capability")


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
    def probe(self, pool_spec: PoolSpec, concurrency: int, tmp_path: Path) -> Iterator[Probe | ProcessProbe]:
        """:class:`ProcessProbe` for pools that declare ``processes``, else :class:`Probe`."""
        if pool_spec.capabilities.processes:
            probe: Probe | ProcessProbe = ProcessProbe(concurrency, tmp_path / "probe")
        else:
            probe = Probe(concurrency)
        yield probe
        probe.release()

    @pytest.fixture
    def lost(self) -> LostRecorder:
        return LostRecorder()

    @pytest.fixture
    def make_pool(
        self,
        pool_spec: PoolSpec,
        concurrency: int,
        pool_options: dict[str, Any],
        probe: Probe | ProcessProbe,
        lost: LostRecorder,
    ) -> Iterator[Callable[..., Pool]]:
        """``make_pool(**context)``: a started pool running the probe, its context changed by
        ``context``; every pool made is shut down (after releasing the probe) at the end."""
        made: list[Pool] = []
        base = PoolContext(concurrency=concurrency, runner=probe, options=pool_options, lost=lost)

        def make(**context: Any) -> Pool:
            pool = pool_spec.factory(attrs.evolve(base, **context))
            pool.start()
            made.append(pool)
            return pool

        yield make
        probe.release()
        for pool in made:
            pool.shutdown(wait=True)

    @pytest.fixture
    def pool(self, make_pool: Callable[..., Pool]) -> Pool:
        """A started pool running the probe, shut down (after releasing it) at the end."""
        return make_pool()

    @pytest.fixture
    def recorder(self, pool: Pool) -> Recorder:
        return Recorder(pool)

    @pytest.fixture
    def feeder(self, pool: Pool, recorder: Recorder, probe: Probe | ProcessProbe) -> Iterator[Feeder]:
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

    def test_pool_agrees_with_its_spec(self, pool: Pool, pool_spec: PoolSpec, concurrency: int) -> None:
        assert isinstance(pool, Pool)
        assert pool.capabilities == pool_spec.capabilities, "the class and the spec disagree"
        assert pool.concurrency == concurrency
        assert pool.free_slots() == concurrency

    # -- running and reporting ------------------------------------------------------------

    def test_every_job_is_reported_once_with_its_ticket(
        self, feeder: Feeder, recorder: Recorder, probe: Probe | ProcessProbe
    ) -> None:
        jobs = {ticket: make_job(ticket, sleep=0.001 * (ticket % 3)) for ticket in range(1, 101)}
        feeder.submit(*jobs.values())
        feeder.wait_done(len(jobs))
        time.sleep(0.1)  # a second report of any job would arrive by now
        calls = recorder.calls
        returned = probe.returned
        assert sorted(job.ticket for job, _ in calls) == sorted(jobs)
        for job, outcome in calls:
            assert job == jobs[job.ticket]
            assert outcome.task_id == job.message.id
            assert outcome == returned[job.ticket]
            assert outcome.state == SUCCESS

    def test_a_job_slot_is_free_when_its_on_done_runs(
        self, feeder: Feeder, recorder: Recorder, concurrency: int
    ) -> None:
        """The worker refills from the report; a slot still taken then delays the next job."""
        feeder.submit(make_job(1))
        feeder.wait_done(1)
        assert recorder.slots_at_done == [concurrency]

    def test_free_slots_follow_running_jobs(
        self, pool: Pool, feeder: Feeder, probe: Probe | ProcessProbe, concurrency: int
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
        self, pool: Pool, feeder: Feeder, probe: Probe | ProcessProbe, concurrency: int
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
        self,
        pool: Pool,
        feeder: Feeder,
        recorder: Recorder,
        probe: Probe | ProcessProbe,
        concurrency: int,
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
        self,
        pool: Pool,
        feeder: Feeder,
        recorder: Recorder,
        probe: Probe | ProcessProbe,
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

    # -- time limits (capabilities soft_time_limit, hard_time_limit) -------------------------

    def test_soft_time_limit_is_raised_in_the_task_which_may_still_succeed(
        self,
        pool_spec: PoolSpec,
        pool: Pool,
        feeder: Feeder,
        probe: Probe | ProcessProbe,
        lost: LostRecorder,
        concurrency: int,
    ) -> None:
        """The task sees kq's own SoftTimeLimitExceeded (``except`` in task code must work),
        catches it and returns normally; nothing is lost."""
        _require(pool_spec, "soft_time_limit")
        feeder.submit(attrs.evolve(make_job(1, soft=True), soft_time_limit=SOFT_LIMIT))
        [(job, outcome)] = feeder.wait_done(1)
        assert outcome.error is None and outcome.state == SUCCESS, outcome.error
        assert outcome == probe.returned[1]
        assert lost.calls == []
        assert wait_until(lambda: pool.free_slots() == concurrency)

    def test_hard_time_limit_stops_the_job_reports_it_lost_and_frees_its_slot(
        self,
        pool_spec: PoolSpec,
        pool: Pool,
        feeder: Feeder,
        probe: Probe | ProcessProbe,
        lost: LostRecorder,
        concurrency: int,
    ) -> None:
        """A job computing without end is stopped; the pool reports what ``lost(job,
        TimeLimitExceeded(...), runtime)`` returned, once, and every slot works again."""
        _require(pool_spec, "hard_time_limit")
        feeder.submit(attrs.evolve(make_job(1, spin=True), time_limit=HARD_LIMIT))
        [(job, outcome)] = feeder.wait_done(1)
        assert [(j.ticket, type(exc)) for j, exc, _ in lost.calls] == [(1, TimeLimitExceeded)]
        assert lost.calls[0][2] >= 0, "runtime must not be negative"
        assert outcome == lost.returned[1]
        assert 1 not in probe.returned, "the job ran to its end"
        feeder.submit(*(make_job(n, barrier=True) for n in range(2, 2 + concurrency)))
        calls = feeder.wait_done(1 + concurrency)[1:]
        assert [outcome.error for _, outcome in calls] == [None] * concurrency
        assert len(lost.calls) == 1
        assert wait_until(lambda: pool.free_slots() == concurrency)

    # -- terminate (capability terminate) ---------------------------------------------------

    def test_terminate_stops_a_running_job_and_reports_it_revoked(
        self,
        pool_spec: PoolSpec,
        pool: Pool,
        feeder: Feeder,
        probe: Probe | ProcessProbe,
        lost: LostRecorder,
        concurrency: int,
    ) -> None:
        """``terminate(task_id, "SIGTERM")`` of a job computing without end stops it: the pool
        reports what ``lost(job, TaskRevoked(...))`` returned, once, and every slot works again.
        An id that runs nowhere in the pool gives ``False``."""
        _require(pool_spec, "terminate")
        job = make_job(1, spin=True)
        assert pool.terminate(job.message.id, "SIGTERM") is False
        feeder.submit(job)
        assert wait_until(lambda: pool.terminate(job.message.id, "SIGTERM")), "never terminated"
        [(_, outcome)] = feeder.wait_done(1)
        assert [(j.ticket, type(exc)) for j, exc, _ in lost.calls] == [(1, TaskRevoked)]
        assert outcome == lost.returned[1]
        assert 1 not in probe.returned, "the job ran to its end"
        assert pool.terminate(job.message.id, "SIGTERM") is False
        feeder.submit(*(make_job(n, barrier=True) for n in range(2, 2 + concurrency)))
        calls = feeder.wait_done(1 + concurrency)[1:]
        assert [outcome.error for _, outcome in calls] == [None] * concurrency
        assert len(lost.calls) == 1
        assert wait_until(lambda: pool.free_slots() == concurrency)

    def test_without_terminate_terminate_says_so(self, pool_spec: PoolSpec, pool: Pool) -> None:
        if pool_spec.capabilities.terminate:
            pytest.skip(f"the {pool_spec.name} pool declares terminate")
        with pytest.raises(PluginError, match="terminate"):
            pool.terminate(uuid.uuid4().hex, "SIGTERM")

    # -- child processes (capabilities processes, max_tasks_per_child) -----------------------

    def test_a_job_whose_process_dies_is_reported_lost_and_the_pool_goes_on(
        self,
        pool_spec: PoolSpec,
        pool: Pool,
        feeder: Feeder,
        lost: LostRecorder,
        concurrency: int,
    ) -> None:
        """SIGKILL (the OOM killer, ``kill -9``) of the process running a job: the pool
        reports what ``lost(job, WorkerLostError(...))`` returned and replaces the process."""
        _require(pool_spec, "processes")
        feeder.submit(make_job(1, die=True))
        [(job, outcome)] = feeder.wait_done(1)
        assert [(j.ticket, type(exc)) for j, exc, _ in lost.calls] == [(1, WorkerLostError)]
        assert outcome == lost.returned[1]
        feeder.submit(*(make_job(n, barrier=True) for n in range(2, 2 + concurrency)))
        calls = feeder.wait_done(1 + concurrency)[1:]
        assert [outcome.error for _, outcome in calls] == [None] * concurrency
        assert len(lost.calls) == 1
        assert wait_until(lambda: pool.free_slots() == concurrency)

    def test_max_tasks_per_child_replaces_children(
        self,
        pool_spec: PoolSpec,
        make_pool: Callable[..., Pool],
        probe: Probe | ProcessProbe,
        concurrency: int,
    ) -> None:
        """No child runs more than ``max_tasks_per_child`` jobs; new ones take over."""
        _require(pool_spec, "max_tasks_per_child")
        per_child = 2
        pool = make_pool(max_tasks_per_child=per_child)
        feeder = Feeder(pool, Recorder(pool))
        total = 3 * per_child * concurrency
        try:
            feeder.submit(*(make_job(n, sleep=0.005) for n in range(total)))
            calls = feeder.wait_done(total)
        finally:
            feeder.close()
        assert [outcome.error for _, outcome in calls] == [None] * total
        jobs_per_pid = Counter(probe.pids.values())
        assert max(jobs_per_pid.values()) <= per_child, jobs_per_pid
        assert len(jobs_per_pid) >= total // per_child, jobs_per_pid
        assert wait_until(lambda: pool.free_slots() == concurrency)

    # -- autoscale (capability autoscale) ---------------------------------------------------

    def test_grow_adds_slots_that_run_jobs_at_once(
        self, pool_spec: PoolSpec, pool: Pool, feeder: Feeder, concurrency: int
    ) -> None:
        _require(pool_spec, "autoscale")
        pool.grow(2)
        size = concurrency + 2
        assert pool.concurrency == size and pool.free_slots() == size
        feeder.submit(*(make_job(n, barrier=size) for n in range(size)))
        calls = feeder.wait_done(size)
        assert [outcome.error for _, outcome in calls] == [None] * size
        assert wait_until(lambda: pool.free_slots() == size)

    def test_shrink_removes_idle_slots_and_keeps_one(
        self, pool_spec: PoolSpec, pool: Pool, feeder: Feeder, concurrency: int
    ) -> None:
        """On an idle pool ``shrink(n)`` removes ``n`` slots, never the last; it can grow
        again afterwards."""
        _require(pool_spec, "autoscale")
        pool.shrink(1)
        assert pool.concurrency == max(1, concurrency - 1)
        assert pool.free_slots() == pool.concurrency
        pool.shrink(concurrency + 5)
        assert pool.concurrency == 1 and pool.free_slots() == 1
        feeder.submit(make_job(1), make_job(2))
        assert [outcome.error for _, outcome in feeder.wait_done(2)] == [None, None]
        pool.grow(1)
        assert pool.concurrency == 2 and pool.free_slots() == 2
        feeder.submit(*(make_job(n, barrier=2) for n in (3, 4)))
        assert [outcome.error for _, outcome in feeder.wait_done(4)[2:]] == [None, None]

    def test_shrink_spares_running_jobs(
        self,
        pool_spec: PoolSpec,
        pool: Pool,
        feeder: Feeder,
        probe: Probe | ProcessProbe,
        concurrency: int,
    ) -> None:
        """A busy slot is not idle: ``shrink`` leaves it, and its job ends normally."""
        _require(pool_spec, "autoscale")
        feeder.submit(make_job(1, hold=True))
        assert probe.wait_started(1)
        pool.shrink(concurrency + 5)
        assert pool.concurrency >= 1
        assert pool.free_slots() == pool.concurrency - 1
        probe.release()
        [(job, outcome)] = feeder.wait_done(1)
        assert outcome.state == SUCCESS and outcome.error is None
        assert wait_until(lambda: pool.free_slots() == pool.concurrency)
