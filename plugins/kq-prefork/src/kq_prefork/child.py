"""What runs inside each pool process: its runner, the job function, its signals.

billiard starts the process, calls the initializer (:func:`use_runner` or :func:`build_runner`),
then loops: receive a job, run :func:`run_job`, send the Outcome back. The parent's timeout
thread signals the process: SIGUSR1 when a job passes its soft time limit, SIGTERM (then SIGKILL)
at its hard limit. :class:`ChildWorker` gives those signals kq's meaning and changes how an idle
process waits for its next job.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from billiard.pool import Worker
from billiard.reduction import ForkingPickler

from kq.exceptions import SoftTimeLimitExceeded
from kq.execution import Runner
from kq.loader import load_app
from kq.pool import Job, Outcome

#: Runs jobs in this process; set once, before the first job, by the initializer.
_runner: Callable[[Job], Outcome] | None = None
#: The job this process is running, ``None`` between jobs; the signal handlers act on it.
_current: Job | None = None


def use_runner(runner: Callable[[Job], Outcome]) -> None:
    """billiard's initializer for a process given the runner: a forked one, which has the
    worker's runner and app in memory, or a spawned one sent a picklable runner (the pool
    contract's probe). The app forgets the connections it shares with the parent
    (``after_fork``), so this process opens its own on first use."""
    global _runner
    app = getattr(runner, "app", None)
    if app is not None:
        app.after_fork()
    _runner = runner


def build_runner(app_spec: str, hostname: str, overrides: dict[str, Any]) -> None:
    """billiard's initializer for a spawned process, which starts with nothing: import the
    app from ``app_spec``, give it the settings the worker got on its command line
    (``overrides``), and build the kernel's Runner as the worker does."""
    global _runner
    app = load_app(app_spec)
    app.override(**overrides)
    _runner = Runner(app, hostname)


def run_job(job: Job) -> Outcome:
    """Run one job with this process's runner; never raises, so billiard always gets an
    Outcome back and only reports errors of its own (a time limit, a lost process)."""
    global _current
    _current = job
    begin = time.perf_counter()
    try:
        assert _runner is not None  # set by the initializer, before the first job
        return _runner(job)
    except BaseException as exc:  # a runner must not raise; one that does must not end us
        return Outcome.failed(job, exc, time.perf_counter() - begin)
    finally:
        _current = None


class ChildWorker(Worker):  # type: ignore[misc]  # billiard has no type hints
    """billiard's process loop, with kq's signal handling installed after billiard's own, a
    receive that does not hold the job pipe's lock while it waits, and results sent without
    the result pipe's lock (:class:`ResultPipe`).

    - SIGUSR1 (soft time limit) raises kq's :class:`~kq.exceptions.SoftTimeLimitExceeded` in
      the running task, so ``except SoftTimeLimitExceeded`` in task code works; between jobs
      it is ignored (the job it was meant for has already ended).
    - SIGTERM while a job runs ends the process at once, by the signal's default action: the
      parent sends it to stop the job (hard time limit, ``shutdown(wait=False)``) and has
      already reported it. billiard's own handler raises SystemExit instead, which the
      kernel's executor catches as the task's failure: the task would store that result over
      the parent's and the process go on to its next job until SIGKILL came, maybe while
      holding a pipe lock. Between jobs billiard's handler stays: it unwinds, releasing any
      lock the process holds.
    """

    def _make_recv_method(self, conn: Any) -> Callable[[float], tuple[bool, Any]]:
        """Wait for the next job without holding the job pipe's lock.

        All children read jobs from one pipe, under one lock shared between processes.
        billiard's receive takes the lock and then blocks reading, so an idle child always
        holds it; killed then (``kill -9``, the OOM killer, which likes an idle child that
        grew big), it takes the lock with it and no child receives a job again: the pool
        hangs. Here a child waits for data with the lock free and holds it only to read one
        waiting message, so only a kill in those microseconds can do that.
        """
        reader, lock = conn._reader, conn._rlock

        def receive(timeout: float) -> tuple[bool, Any]:
            if not reader.poll(timeout):
                return False, None
            with lock:
                if not reader.poll(0):  # another child took it
                    return False, None
                payload = reader.recv_bytes()
            return True, pickle.loads(payload)

        return receive

    def _make_child_methods(self, *args: Any, **kwargs: Any) -> None:
        super()._make_child_methods(*args, **kwargs)
        self.outq: ResultPipe = ResultPipe(self.outq)

    def after_fork(self) -> None:
        super().after_fork()
        signal.signal(signal.SIGUSR1, _soft_time_limit)
        between_jobs = signal.getsignal(signal.SIGTERM)
        if callable(between_jobs):
            signal.signal(signal.SIGTERM, _terminate_handler(between_jobs))


class ResultPipe:
    """The result queue as a child writes to it: without the lock when it can.

    All children send results (accepted, done) up one pipe, under one lock shared between
    processes; billiard takes it for every message. A child killed while it holds it (a kill
    every 2 s in tests/chaos hits one now and then) takes the lock with it, and no child can
    report a job again: the pool stalls for good, its jobs unacked. A message framed as
    billiard frames it (a 4-byte length, then the pickle) that fits in ``PIPE_BUF`` bytes is
    written here in one ``write``, which POSIX makes atomic on a pipe: it cannot interleave
    with another child's, so it needs no lock. Only larger ones (a long traceback) take it.
    """

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._fd = queue._writer.fileno()

    def put(self, obj: Any) -> None:
        payload = ForkingPickler.dumps(obj)
        frame = struct.pack("!i", len(payload)) + payload
        if len(frame) <= select.PIPE_BUF:
            os.write(self._fd, frame)  # blocking pipe: all of it, or an error
        else:
            self._queue.send_payload(payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


def _soft_time_limit(signum: int, frame: FrameType | None) -> None:
    job = _current
    if job is not None:
        raise SoftTimeLimitExceeded(
            f"task {job.message.task}[{job.message.id}] passed its soft time limit of {job.soft_time_limit} s"
        )


def _terminate_handler(
    between_jobs: Callable[[int, FrameType | None], Any],
) -> Callable[[int, FrameType | None], Any]:
    def terminate(signum: int, frame: FrameType | None) -> Any:
        if _current is None:
            return between_jobs(signum, frame)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return None

    return terminate
