"""Sync jobs in the asyncio pool: each runs in a daemon thread of its own, which the loop's
timers can interrupt at the job's time limits.

A thread cannot be stopped from outside; the interpreter can only be asked to raise an
exception in it (``PyThreadState_SetAsyncExc``), which the thread sees at its next bytecode. A
thread inside one long C call (``time.sleep(60)``, a socket read without a timeout) sees it
only when that call returns. So, for a sync task:

- soft limit: ``SoftTimeLimitExceeded`` is raised in the task, which may catch it;
- hard limit: :class:`Stopped`, a ``BaseException`` that ``except Exception`` in the task and
  in kq's runner lets through, ends the job, which is reported lost (``TimeLimitExceeded``).
  Its slot comes back when the thread leaves the task, not before, so the pool never runs
  more than ``concurrency`` jobs.

Why a thread per job rather than an executor: the job owns its thread, so an interruption can
never reach another job; and the interpreter joins executor threads at exit, so a sync task
still running after ``shutdown(wait=False)`` would keep the process alive, where a daemon
thread does not. Starting a thread costs tens of microseconds, little beside a task.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections.abc import Callable

from kq.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kq.pool import Job, Outcome

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int
#: Passed instead of an exception class, it clears the thread's pending one.
_NOTHING = ctypes.py_object()

Lost = Callable[[Job, BaseException, float], Outcome]


class Stopped(BaseException):
    """Raised in a sync job's thread at its hard time limit; the pool catches it (a task sees
    it only in a bare ``except:``, which is how it could ignore the limit)."""


async def run_in_thread(job: Job, runner: Callable[[Job], Outcome], lost: Lost) -> Outcome:
    """Run ``job`` with ``runner`` in a thread of its own, under the job's time limits."""
    loop = asyncio.get_running_loop()
    sync = _SyncJob(job, runner, lost, loop)
    timers = []
    if job.soft_time_limit is not None:
        timers.append(loop.call_later(job.soft_time_limit, sync.interrupt, SoftTimeLimitExceeded))
    if job.time_limit is not None:
        timers.append(loop.call_later(job.time_limit, sync.interrupt, Stopped))
    try:
        return await sync.future
    finally:
        for timer in timers:
            timer.cancel()


class _SyncJob:
    """One job in its thread, and the handle the loop's timers interrupt it with.

    The loop calls :meth:`interrupt`; the thread calls :meth:`_finish` when the runner
    returns. They exclude each other under one lock, so an exception is only ever fired while
    the runner runs, and one fired as it returned is cleared before the thread goes on.
    """

    def __init__(
        self, job: Job, runner: Callable[[Job], Outcome], lost: Lost, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.job = job
        self._runner = runner
        self._lost = lost
        self._loop = loop
        self.future: asyncio.Future[Outcome] = loop.create_future()
        self._lock = threading.Lock()
        self._running = False
        self._fired = False
        self._thread = threading.Thread(target=self._run, name=f"kq-asyncio-sync-{job.ticket}", daemon=True)
        self._thread.start()

    def interrupt(self, exc: type[BaseException]) -> None:
        """Raise ``exc`` in the job's thread, if its runner is still running."""
        with self._lock:
            if self._running:
                self._fired = True
                _set_async_exc(self._thread.ident, exc)

    def _run(self) -> None:
        begin = time.perf_counter()
        outcome: Outcome | None = None
        try:
            try:
                with self._lock:
                    self._running = True
                outcome = self._runner(self.job)
            finally:
                self._finish()
        except Stopped:
            if outcome is None:  # else it ended just as the limit passed: it did end
                limit = self.job.time_limit
                outcome = self._lost(
                    self.job,
                    TimeLimitExceeded(f"hard time limit ({limit} s) exceeded"),
                    time.perf_counter() - begin,
                )
        except BaseException as exc:  # incl. SystemExit, and a limit arriving outside the runner
            if outcome is None:
                outcome = Outcome.failed(self.job, exc, time.perf_counter() - begin)
        try:
            self._loop.call_soon_threadsafe(_settle, self.future, outcome)
        except RuntimeError:  # the loop is closed: the pool abandoned this job
            pass

    def _finish(self) -> None:
        """After this, nothing fired at this job can reach the thread."""
        with self._lock:
            self._running = False
            fired = self._fired
        if fired:
            _set_async_exc(self._thread.ident, _NOTHING)


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.cancelled():
        future.set_result(outcome)
