"""The threads pool: a fixed set of threads fed by one queue.

Threads share the worker's process, so this pool suits I/O-bound tasks (network calls, database
queries), which release the GIL while they wait. CPU-bound tasks belong in a process pool.

Why not :class:`concurrent.futures.ThreadPoolExecutor`: it allocates a ``Future`` (with its own
condition variable) per job only for us to turn it back into a callback; its threads are joined
at interpreter exit, so ``shutdown(wait=False)`` cannot really abandon a running task; and its
free capacity is not observable, so we would keep our own count anyway. The pool below is the
part of it we need: a ``SimpleQueue``, one lock-guarded counter, ``concurrency`` threads.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from kq.exceptions import ConfigurationError, PoolClosed
from kq.pool import Job, Outcome, Pool, PoolCapabilities, PoolContext
from kq.states import FAILURE

log = logging.getLogger("kq.pool.threads")

#: Default ``--concurrency``: enough threads to overlap I/O on a small machine, bounded on a
#: big one (the rule ``concurrent.futures`` uses for the same reason).
DEFAULT_CONCURRENCY = min(32, (os.cpu_count() or 1) + 4)

OnDone = Callable[[Job, Outcome], None]


class ThreadPool(Pool):
    """``concurrency`` threads, started by :meth:`start`, each running one job at a time.

    The threads are daemon threads. ``shutdown(wait=True)`` joins them explicitly, so a warm
    shutdown still finishes every running task; but nothing else keeps the process alive for
    them. A worker that stops without a warm shutdown (a second Ctrl-C, an error) exits at
    once, and its unacknowledged tasks are redelivered, instead of hanging on idle threads or
    on a task that may never end.
    """

    capabilities = PoolCapabilities()

    def __init__(self, context: PoolContext) -> None:
        super().__init__(context)
        if context.concurrency < 1:
            raise ConfigurationError(
                f"worker_concurrency must be at least 1 for the threads pool, "
                f"got {context.concurrency}"
            )
        self._jobs: queue.SimpleQueue[tuple[Job, OnDone] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished: queued plus running
        self._closed = False
        self._abandoned = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"kq-threads-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            if self._closed:
                raise PoolClosed("the threads pool is shut down and accepts no more jobs")
            self._pending += 1
        self._jobs.put((job, on_done))

    def free_slots(self) -> int:
        if self._closed:
            return 0
        return max(0, self.concurrency - self._pending)

    def shutdown(self, wait: bool) -> None:
        """Stop the threads once the queue is empty; ``wait=False`` also drops queued jobs
        and stops reporting running ones (the worker is leaving and will not ack them)."""
        with self._lock:
            first = not self._closed
            self._closed = True
            self._abandoned = self._abandoned or not wait
        if first:
            for _ in self._threads:
                self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        runner = self.context.runner
        while (item := self._jobs.get()) is not None and not self._abandoned:
            job, on_done = item
            begin = time.perf_counter()
            try:
                outcome = runner(job)
            except BaseException as exc:  # incl. SystemExit: this thread and its slot must live
                outcome = Outcome(job.message.id, FAILURE, time.perf_counter() - begin,
                                  error=f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._pending -= 1  # before on_done: the worker refills as soon as it hears
            if self._abandoned:
                return
            try:
                on_done(job, outcome)
            except Exception:
                log.exception("kq: on_done failed for task %s", job.message.id)
