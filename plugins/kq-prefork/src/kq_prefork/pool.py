"""The prefork pool: jobs run in child processes that billiard starts, watches and replaces.

billiard does the process work: it forks (or spawns) the children, hands each job to whichever
is free through one pipe, brings the Outcome back through another, enforces per-job soft and
hard time limits from a timeout thread, replaces children that exit (killed, timed out,
``max_tasks_per_child``, ``max_memory_per_child``), and grows or shrinks the set. This module
maps that onto kq's :class:`~kq.pool.Pool`: it counts slots itself (billiard's counting sees
processes, kq's worker needs jobs), turns billiard's errors into the kernel's lost-job policy
(``PoolContext.lost``), and decides how shutdown ends. :mod:`kq_prefork.child` is the part
that runs in the children.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import billiard
import billiard.exceptions
import billiard.pool

from kq.exceptions import ConfigurationError, PoolClosed, TaskRevoked, TimeLimitExceeded, WorkerLostError
from kq.pool import Job, Outcome, Pool, PoolContext, report_done

from . import CAPABILITIES
from .child import ChildWorker, build_runner, run_job, use_runner

OnDone = Callable[[Job, Outcome], None]


class Processes(billiard.pool.Pool):  # type: ignore[misc]  # billiard has no type hints
    """billiard's pool, with kq's child loop (:class:`~kq_prefork.child.ChildWorker`)."""

    Worker = ChildWorker


@attrs.frozen
class PreforkOptions:
    """What ``worker_pool_options`` may set for this pool."""

    #: ``fork`` (default where the OS has it): children inherit the worker's app and runner and
    #: start in milliseconds. ``spawn`` / ``forkserver``: children import the app from ``-A``.
    start_method: str = attrs.field(default="fork" if "fork" in billiard.get_all_start_methods() else "spawn")
    #: After a child dies, how long to wait for a result it may have sent just before dying,
    #: before the job is reported lost (seconds).
    lost_worker_timeout: float = attrs.field(default=1.0)

    @start_method.validator
    def _known_method(self, attribute: attrs.Attribute[str], value: str) -> None:
        methods = billiard.get_all_start_methods()
        if value not in methods:
            raise ConfigurationError(
                f"worker_pool_options: start_method must be one of {', '.join(methods)}, got {value!r}"
            )

    @lost_worker_timeout.validator
    def _positive(self, attribute: attrs.Attribute[float], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(
                f"worker_pool_options: lost_worker_timeout must be a "
                f"positive number of seconds, got {value!r}"
            )

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PreforkOptions:
        known = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"worker_pool_options: the prefork pool has no option "
                f"{', '.join(unknown)}; it knows {', '.join(sorted(known))}"
            )
        return cls(**options)


class PreforkPool(Pool):
    """``concurrency`` child processes, each running one job at a time with the kernel's runner.

    Slots are counted here: a job holds one from :meth:`submit` until its report, which comes
    from billiard's result thread (the job ended), its timeout thread (hard time limit) or its
    supervisor thread (the child died). Lost jobs are reported from a thread of this pool, so
    the kernel's ``lost`` (which stores a result) never holds up billiard's threads.
    """

    capabilities = CAPABILITIES

    def __init__(self, context: PoolContext) -> None:
        super().__init__(context)
        self.options = PreforkOptions.from_mapping(context.options)
        self._concurrency = context.concurrency
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._pending = 0  # jobs holding a slot: submitted, not yet reported
        self._unreported = 0  # jobs whose on_done has not returned yet
        self._unaccepted = 0  # jobs no child has taken from the pipe yet
        self._busy: dict[int, Running] = {}  # child pid -> the job it runs
        self._closed = False
        self._abandoned = False
        self._stopped = False
        self._processes: Processes | None = None
        self._lost: queue.SimpleQueue[tuple[Running, BaseException] | None] = queue.SimpleQueue()
        self._reporter = threading.Thread(target=self._report_lost, name="kq-prefork-lost", daemon=True)

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def start(self) -> None:
        initializer, initargs = self._initializer()
        context = self.context
        self._processes = Processes(
            processes=self._concurrency,
            initializer=initializer,
            initargs=initargs,
            maxtasksperchild=context.max_tasks_per_child,
            max_memory_per_child=context.max_memory_per_child,
            lost_worker_timeout=self.options.lost_worker_timeout,
            enable_timeouts=True,  # limits come per job; the timeout thread must exist
            context=billiard.get_context(self.options.start_method),
        )
        self._reporter.start()

    def _initializer(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        """How children get their runner: inherited by fork, else rebuilt from ``-A``."""
        context = self.context
        if self.options.start_method == "fork":
            return use_runner, (context.runner,)
        if context.app_spec is None:
            try:
                pickle.dumps(context.runner)
            except Exception as exc:
                raise ConfigurationError(
                    f"the prefork pool's start_method {self.options.start_method!r} rebuilds "
                    f"the app in each child: start the worker with -A module:app, or use fork "
                    f"({exc})"
                ) from None
            return use_runner, (context.runner,)
        app = getattr(context.runner, "app", None)
        overrides = (
            {}
            if app is None
            else {"broker_url": app.conf.broker_url, "result_backend": app.conf.result_backend}
        )
        return build_runner, (context.app_spec, context.hostname, overrides)

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            if self._closed:
                raise PoolClosed("the prefork pool is shut down and accepts no more jobs")
            self._pending += 1
            self._unreported += 1
            self._unaccepted += 1
        running = Running(self, job, on_done)
        assert self._processes is not None  # made by start(), before any job
        handle = self._processes.apply_async(
            run_job,
            (job,),
            callback=running.ended,
            error_callback=running.failed,
            accept_callback=running.accepted,
            soft_timeout=job.soft_time_limit,
            timeout=job.time_limit,
        )
        if handle is None:  # billiard stopped on its own (children failing to start)
            with self._settled:
                self._pending -= 1
                self._unreported -= 1
                self._unaccepted -= 1
                self._settled.notify_all()
            raise PoolClosed("the prefork pool's processes have stopped")

    def free_slots(self) -> int:
        if self._closed:
            return 0
        return max(0, self._concurrency - self._pending)

    def terminate(self, task_id: str, signal_name: str) -> bool:
        """Send ``signal_name`` to the child running ``task_id``; billiard then reports the child
        lost and replaces it, and :meth:`Running.failed` reports the job revoked."""
        with self._lock:
            running = next((r for r in self._busy.values() if r.job.message.id == task_id), None)
            if running is None:
                return False
            running.terminated = signal_name
        try:
            os.kill(running.pid, getattr(signal, signal_name))
        except ProcessLookupError:  # it ended in between: its own outcome is on its way
            return False
        return True

    def grow(self, n: int) -> None:
        """Add ``n`` slots now; billiard starts their processes within a second."""
        with self._lock:
            self._concurrency += n
        assert self._processes is not None  # made by start(), before the autoscaler runs
        self._processes.grow(n)

    def shrink(self, n: int) -> None:
        """End up to ``n`` idle processes, never the last, and drop their slots.

        Nothing is ended while a job waits in the pipe: the idle process about to take it
        could be the one stopped, losing the job. The autoscaler asks again later.
        """
        with self._lock:
            if self._closed or self._unaccepted:
                return
            count = min(n, self._concurrency - self._pending, self._concurrency - 1)
        assert self._processes is not None  # made by start(), before the autoscaler runs
        for _ in range(count):
            try:
                self._processes.shrink(1)
            except ValueError:  # no process is idle right now (one is being replaced)
                return
            with self._lock:
                self._concurrency -= 1

    def shutdown(self, wait: bool) -> None:
        """``wait=True``: let every submitted job end and be reported, then end the children.
        ``wait=False``: end them now; running jobs are abandoned and never reported (the
        worker is leaving and does not ack them). Later calls change nothing."""
        with self._settled:
            self._closed = True
            if not wait:
                self._abandoned = True
                self._settled.notify_all()
            else:
                self._settled.wait_for(lambda: self._unreported == 0 or self._abandoned)
            busy = list(self._busy) if not wait else []
        for pid in busy:  # at once, even if the caller exits right after us
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._stop(in_background=not wait)

    def _stop(self, in_background: bool) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._lost.put(None)
        if self._processes is None:
            return
        if in_background:
            # billiard's terminate waits for its threads and children to exit (a second or
            # more); the caller wants to leave now, and the busy children are ending already.
            threading.Thread(
                target=self._processes.terminate, name="kq-prefork-terminate", daemon=True
            ).start()
        else:
            self._processes.terminate()
            self._reporter.join()

    # -- reporting (called from billiard's threads) ------------------------------------------

    def _accepted(self, running: Running) -> None:
        with self._lock:
            self._unaccepted -= 1
            self._busy[running.pid] = running

    def _report(self, running: Running, outcome: Outcome) -> None:
        with self._lock:
            self._pending -= 1  # before on_done: the worker refills as soon as it hears
            if self._busy.get(running.pid) is running:
                del self._busy[running.pid]
            elif not running.pid:
                self._unaccepted -= 1
            abandoned = self._abandoned
        try:
            if not abandoned:
                report_done(running.on_done, running.job, outcome)
        finally:
            with self._settled:
                self._unreported -= 1
                self._settled.notify_all()

    def _report_lost(self) -> None:
        """Ask the kernel what a lost job's outcome is (it may store a FAILURE), then report;
        once the pool is abandoned the worker is leaving, and nothing is stored."""
        while (item := self._lost.get()) is not None:
            running, exc = item
            runtime = time.monotonic() - running.started if running.started else 0.0
            lost = Outcome.failed if self._abandoned else self.context.lost
            self._report(running, lost(running.job, exc, runtime))


class Running:
    """One submitted job: billiard's callbacks for it, bound to the pool's bookkeeping."""

    __slots__ = ("pool", "job", "on_done", "pid", "started", "terminated")

    def __init__(self, pool: PreforkPool, job: Job, on_done: OnDone) -> None:
        self.pool = pool
        self.job = job
        self.on_done = on_done
        #: The child that took the job from the pipe, and when (``time.monotonic``, which all
        #: processes share); 0 until then.
        self.pid = 0
        self.started = 0.0
        #: The signal :meth:`PreforkPool.terminate` sent, if it did.
        self.terminated: str | None = None

    def accepted(self, pid: int, accepted_at: float) -> None:
        self.pid, self.started = pid, accepted_at
        self.pool._accepted(self)

    def ended(self, outcome: Outcome) -> None:
        self.pool._report(self, outcome)

    def failed(self, error: Any) -> None:
        """billiard's error callback, with an ``ExceptionInfo``: ``run_job`` never raises, so
        this is billiard saying the job was stopped or its process died."""
        exc = getattr(error.exception, "exc", error.exception)  # unwrapped from its traceback
        job = self.job
        if self.terminated and isinstance(exc, billiard.exceptions.WorkerLostError):
            lost: BaseException = TaskRevoked(f"terminated with {self.terminated}")
        elif isinstance(exc, billiard.exceptions.TimeLimitExceeded):
            lost = TimeLimitExceeded(
                f"task {job.message.task}[{job.message.id}] ran past its time limit of "
                f"{job.time_limit} s and its process was stopped"
            )
        elif isinstance(exc, billiard.exceptions.WorkerLostError):
            lost = WorkerLostError(
                f"the process running task {job.message.task}"
                f"[{job.message.id}] ended before the task did: {exc}"
            )
        else:  # the Outcome could not be sent back (MaybeEncodingError): the job did run
            self.pool._report(self, Outcome.failed(job, exc))
            return
        self.pool._lost.put((self, lost))
