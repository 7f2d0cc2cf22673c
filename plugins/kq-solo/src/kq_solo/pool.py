"""The solo pool: each job runs inside ``submit``, in the worker's own thread.

No threads, no processes, nothing shared: the simplest way to run tasks, and the easiest to
debug (breakpoints and profilers see the task in the main thread). One job at a time, so a
long task stops the worker from doing anything else, heartbeats and control included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kq.exceptions import PoolClosed
from kq.pool import Job, Outcome, Pool, PoolCapabilities, PoolContext


class SoloPool(Pool):
    """Runs one job at a time in the submitting thread; ``context.concurrency`` is ignored."""

    capabilities = PoolCapabilities()

    def __init__(self, context: PoolContext) -> None:
        super().__init__(context)
        # Held while a job runs, so shutdown(wait=True) from another thread waits for it. It is
        # re-entrant because a signal handler in the job's own thread may call shutdown too:
        # that call cannot wait for the frame beneath it and returns at once.
        self._busy = threading.RLock()
        self._running = False
        self._closed = False

    @property
    def concurrency(self) -> int:
        return 1

    def start(self) -> None:
        """Nothing to start: jobs run in the thread that submits them."""

    def submit(self, job: Job, on_done: Callable[[Job, Outcome], None]) -> None:
        """Run ``job`` now and report it before returning.

        An exception escaping the runner is reported as a FAILURE so the worker goes on; a
        ``BaseException`` (Ctrl-C, ``SystemExit``) propagates, because in solo the task's thread
        is the worker's thread and those are meant to stop it.
        """
        if self._closed:
            raise PoolClosed("the solo pool is shut down and accepts no more jobs")
        with self._busy:
            self._running = True
            begin = time.perf_counter()
            try:
                outcome = self.context.runner(job)
            except Exception as exc:
                outcome = Outcome.failed(job, exc, time.perf_counter() - begin)
            finally:
                self._running = False
            on_done(job, outcome)

    def free_slots(self) -> int:
        return 0 if self._closed or self._running else 1

    def shutdown(self, wait: bool) -> None:
        self._closed = True
        if wait:
            with self._busy:  # a job running in another thread ends, and is reported, first
                pass
