"""The threads pool: a set of threads fed by one queue.

Threads share the worker's process, so this pool suits I/O-bound tasks (network calls, database
queries), which release the GIL while they wait. CPU-bound tasks belong in a process pool.

Why not :class:`concurrent.futures.ThreadPoolExecutor`: it allocates a ``Future`` (with its own
condition variable) per job only for us to turn it back into a callback; its threads are joined
at interpreter exit, so ``shutdown(wait=False)`` cannot really abandon a running task; and its
free capacity is not observable, so we would keep our own count anyway. The pool below is the
part of it we need: a ``SimpleQueue``, one lock-guarded counter, ``concurrency`` threads, and a
:class:`~kq_threads.watchdog.Watchdog` for soft time limits.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable

from kq.exceptions import PoolClosed, TaskRevoked
from kq.pool import Job, Outcome, Pool, PoolCapabilities, PoolContext, report_done

from .watchdog import Alarm, Watchdog

#: Default ``--concurrency``: enough threads to overlap I/O on a small machine, bounded on a
#: big one (the rule ``concurrent.futures`` uses for the same reason).
DEFAULT_CONCURRENCY = min(32, (os.cpu_count() or 1) + 4)

OnDone = Callable[[Job, Outcome], None]


class Terminated(BaseException):
    """Raised in a job's thread by :meth:`ThreadPool.terminate`. Not an ``Exception``: neither
    the task's ``except Exception`` nor the runner catches it, so it ends the job at once and
    reaches the pool, which reports the job revoked (``finally`` blocks in the task still run).
    """


class ThreadPool(Pool):
    """``concurrency`` threads, started by :meth:`start`, each running one job at a time.

    The threads are daemon threads. ``shutdown(wait=True)`` joins them explicitly, so a warm
    shutdown still finishes every running task; but nothing else keeps the process alive for
    them. A worker that stops without a warm shutdown (a second Ctrl-C, an error) exits at
    once, and its unacknowledged tasks are redelivered, instead of hanging on idle threads or
    on a task that may never end.

    Soft time limits are raised inside the task's thread (see :mod:`kq_threads.watchdog`);
    hard ones cannot be: a thread cannot be killed, so the worker warns that it runs without.
    :meth:`terminate` raises :class:`Terminated` in the job's thread the same way, so it stops
    a task at its next Python bytecode (a task inside one long C call, such as ``time.sleep``,
    stops when that call returns).
    """

    capabilities = PoolCapabilities(soft_time_limit=True, autoscale=True, terminate=True)

    def __init__(self, context: PoolContext) -> None:
        super().__init__(context)
        self._size = context.concurrency
        self._jobs: queue.SimpleQueue[tuple[Job, OnDone] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished: queued plus running
        self._closed = False
        self._abandoned = False
        self._threads: list[threading.Thread] = []
        self._names = itertools.count()
        self._watchdog = Watchdog("kq-threads-watchdog")
        self._alarms: dict[str, Alarm] = {}  # task id -> the alarm of its running job

    @property
    def concurrency(self) -> int:
        return self._size

    def start(self) -> None:
        with self._lock:
            self._add_threads(self._size)

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            if self._closed:
                raise PoolClosed("the threads pool is shut down and accepts no more jobs")
            self._pending += 1
        self._jobs.put((job, on_done))
        # Let go of the GIL: the thread just woken takes it and starts the job now, instead of
        # waiting until the worker's loop next blocks on the broker. A drain of no-op tasks at
        # -c 2 went from ~4,500 to ~5,400 tasks/s here (bench/, S1).
        time.sleep(0)

    def free_slots(self) -> int:
        if self._closed:
            return 0
        return max(0, self._size - self._pending)

    def terminate(self, task_id: str, signal_name: str) -> bool:
        """Raise :class:`Terminated` in the thread running ``task_id`` (threads take no
        signals: ``signal_name`` is not used)."""
        alarm = self._alarms.get(task_id)
        return alarm is not None and self._watchdog.fire(alarm, Terminated)

    def grow(self, n: int) -> None:
        """Start ``n`` more threads."""
        with self._lock:
            if self._closed:
                return
            self._size += n
            self._add_threads(n)

    def shrink(self, n: int) -> None:
        """Retire up to ``n`` idle threads, keeping at least one.

        The slots go at once; each retiring thread leaves when it takes its stop marker from
        the queue, after any job queued before it.
        """
        with self._lock:
            if self._closed:
                return
            retire = max(0, min(n, self._size - self._pending, self._size - 1))
            self._size -= retire
        for _ in range(retire):
            self._jobs.put(None)

    def shutdown(self, wait: bool) -> None:
        """Stop the threads once the queue is empty; ``wait=False`` also drops queued jobs
        and stops reporting running ones (the worker is leaving and will not ack them)."""
        with self._lock:
            first = not self._closed
            self._closed = True
            self._abandoned = self._abandoned or not wait
            threads = list(self._threads)
        if first:
            for _ in threads:
                self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join()
        self._watchdog.stop()

    def _add_threads(self, count: int) -> None:
        """Start ``count`` threads; call with the lock held."""
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        for _ in range(count):
            name = f"kq-threads-{next(self._names)}"
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        runner = self.context.runner
        while (item := self._jobs.get()) is not None and not self._abandoned:
            job, on_done = item
            outcome = self._run(runner, job)
            with self._lock:
                self._pending -= 1  # before on_done: the worker refills as soon as it hears
            if self._abandoned:
                return
            report_done(on_done, job, outcome)

    def _run(self, runner: Callable[[Job], Outcome], job: Job) -> Outcome:
        """Run one job under its soft limit; whatever happens, return its outcome.

        The limit can fire the moment it is armed, so arming is inside the guarded block:
        wherever the exception lands in this thread (before the runner, in it, after it), it
        ends here, and ``disarm`` makes sure it cannot land anywhere later.
        """
        begin = time.perf_counter()
        alarm: Alarm | None = None
        outcome: Outcome | None = None
        task_id = job.message.id
        try:
            try:
                if job.soft_time_limit is not None:
                    alarm = self._watchdog.arm(job.soft_time_limit)
                else:
                    alarm = self._watchdog.track()
                self._alarms[task_id] = alarm
                outcome = runner(job)
            finally:
                if alarm is not None:
                    self._alarms.pop(task_id, None)
                    self._watchdog.disarm(alarm)
        except BaseException as exc:  # incl. SystemExit: this thread and its slot must live
            # Also a soft limit that fired as the job began or ended and arrived outside the
            # runner: when the runner did return, its outcome stands.
            if outcome is None:
                runtime = time.perf_counter() - begin
                if isinstance(exc, Terminated):
                    outcome = self.context.lost(job, TaskRevoked("terminated"), runtime)
                else:
                    outcome = Outcome.failed(job, exc, runtime)
        return outcome
