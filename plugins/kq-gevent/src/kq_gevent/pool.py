"""The gevent pool: one greenlet per job, at most ``concurrency`` at once.

Every greenlet runs in the worker's own thread, and only one runs at a time: a task makes room
for the others (and for the worker's loop) whenever it waits on something monkey-patched, such
as a socket, ``time.sleep`` or a lock. So the pool is only useful, and is only accepted, in a
process patched before the app was imported (``kq worker -P gevent`` does that).

Why not :class:`gevent.pool.Pool`: it frees a slot from a link callback that the hub runs
after the greenlet has died, so its ``free_count()`` still counts a job while that job's
``on_done`` runs (the worker would refill one loop turn late), and its ``spawn`` blocks when it
is full, which the worker never wants. A set of the running greenlets is all the pool needs: its
size is the busy count, and it is what ``shutdown`` joins or kills.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent import Greenlet, GreenletExit, Timeout, monkey

from kq.exceptions import ConfigurationError, PoolClosed, SoftTimeLimitExceeded, TimeLimitExceeded
from kq.pool import Job, Outcome, Pool, PoolContext, report_done

from . import CAPABILITIES
from .watchdog import WATCHDOG

OnDone = Callable[[Job, Outcome], None]

#: What the worker itself blocks in: broker sockets or the SQLite poll's sleep, its wait for
#: finished jobs (``queue.SimpleQueue``), its stop ``threading.Event``. Left unpatched, any
#: of them blocks the hub, and no task runs while it does.
MUST_BE_PATCHED = ("socket", "time", "threading", "queue")


class GeventPool(Pool):
    """Spawns a greenlet per job; ``concurrency`` is a limit, not a set of workers."""

    capabilities = CAPABILITIES

    def __init__(self, context: PoolContext) -> None:
        super().__init__(context)
        unpatched = [name for name in MUST_BE_PATCHED if not monkey.is_module_patched(name)]
        if unpatched:
            raise ConfigurationError(
                f"worker_pool: the gevent pool needs the process monkey-patched before the app "
                f"is imported, and {', '.join(unpatched)} are not: start the worker with "
                f"`kq worker -P gevent` (or KQ_WORKER_POOL=gevent), or call "
                f"gevent.monkey.patch_all() first thing in the app module"
            )
        self._size = context.concurrency
        self._running: set[Greenlet[..., Any]] = set()
        self._closed = False
        self._abandoned = False

    @property
    def concurrency(self) -> int:
        return self._size

    def start(self) -> None:
        """Nothing to start: spawning a greenlet per job costs microseconds."""

    def submit(self, job: Job, on_done: OnDone) -> None:
        if self._closed:
            raise PoolClosed("the gevent pool is shut down and accepts no more jobs")
        greenlet = Greenlet(self._run, job, on_done)
        self._running.add(greenlet)  # counted now: free_slots() is right as soon as we return
        greenlet.start()

    def free_slots(self) -> int:
        if self._closed:
            return 0
        return max(0, self._size - len(self._running))

    def grow(self, n: int) -> None:
        self._size += n

    def shrink(self, n: int) -> None:
        idle = self._size - len(self._running)
        self._size -= max(0, min(n, idle, self._size - 1))

    def shutdown(self, wait: bool) -> None:
        """``wait=True`` joins every running greenlet (each reports first); ``wait=False``
        kills them and reports none: the worker is leaving and will not ack them."""
        self._closed = True
        running = list(self._running)
        if wait:
            gevent.joinall(running)
            return
        self._abandoned = True
        for greenlet in running:
            # Not blocking: the kill lands the next time this greenlet yields, so shutdown
            # returns at once even if a task ignores GreenletExit for a while.
            greenlet.kill(block=False)

    def _run(self, job: Job, on_done: OnDone) -> None:
        begin = time.perf_counter()
        try:
            outcome = self._limited(job, begin)
        except GreenletExit:
            raise  # killed by shutdown(wait=False): abandoned, never reported
        except BaseException as exc:  # incl. SystemExit: the slot must live
            outcome = Outcome.failed(job, exc, time.perf_counter() - begin)
        finally:
            self._running.discard(gevent.getcurrent())  # before on_done: the worker refills now
        if self._abandoned:
            return
        report_done(on_done, job, outcome)

    def _limited(self, job: Job, begin: float) -> Outcome:
        """Run ``job`` under its limits. The hard one raises the Timeout itself, a
        BaseException that ``except Exception`` in the task and the runner let through; the
        soft one raises :class:`SoftTimeLimitExceeded`, which the task may catch. The hub
        raises them where the task yields, the watchdog where it computes."""
        hard = Timeout(job.time_limit)
        soft = Timeout(
            job.soft_time_limit, SoftTimeLimitExceeded(f"soft time limit ({job.soft_time_limit} s) exceeded")
        )
        try:
            with hard, soft, WATCHDOG.watching(hard, soft):
                return self.context.runner(job)
        except Timeout as exc:
            if exc is not hard:
                raise
        stopped = TimeLimitExceeded(f"hard time limit ({job.time_limit} s) exceeded")
        return self.context.lost(job, stopped, time.perf_counter() - begin)
