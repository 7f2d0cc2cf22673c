"""The eventlet pool: a green thread per job, at most ``concurrency`` at once.

All green threads share the worker's thread and take turns whenever one waits on something
eventlet has greened (sockets, ``time.sleep``, locks, queues). The pool therefore only works,
and is only accepted, in a process monkey-patched before the app was imported.

Why not :class:`eventlet.GreenPool`: it frees a slot only once the green thread's function has
returned, so a job still counts while its ``on_done`` runs (the worker would refill a loop turn
late), and its ``spawn`` blocks when it is full, which the worker never wants. A set of the
running green threads is all the pool needs: its size is the busy count, and it is what
``shutdown`` waits for or kills.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import eventlet
from eventlet import Timeout, hubs, patcher
from eventlet.greenthread import GreenThread
from eventlet.support.greenlets import GreenletExit

from kq.exceptions import ConfigurationError, PoolClosed, SoftTimeLimitExceeded
from kq.pool import Job, Outcome, Pool, PoolContext, report_done

from . import CAPABILITIES

OnDone = Callable[[Job, Outcome], None]

#: What the worker itself blocks in: broker sockets or the SQLite poll's sleep (socket, time)
#: and its wait for finished jobs and its stop event (``thread`` greens threading and queue).
MUST_BE_PATCHED = ("socket", "time", "thread")


class EventletPool(Pool):
    """Spawns a green thread per job; ``concurrency`` is a limit, not a set of workers."""

    capabilities = CAPABILITIES

    def __init__(self, context: PoolContext) -> None:
        super().__init__(context)
        unpatched = [name for name in MUST_BE_PATCHED if not patcher.is_monkey_patched(name)]
        if unpatched:
            raise ConfigurationError(
                f"worker_pool: the eventlet pool needs the process monkey-patched before the "
                f"app is imported, and {', '.join(unpatched)} are not: start the worker with "
                f"`kq worker -P eventlet` (or KQ_WORKER_POOL=eventlet), or call "
                f"eventlet.monkey_patch() first thing in the app module"
            )
        self._limit = context.concurrency
        self._threads: set[GreenThread] = set()
        self._closed = False
        self._abandoned = False

    @property
    def concurrency(self) -> int:
        return self._limit

    def start(self) -> None:
        """Nothing to start: spawning a green thread per job costs microseconds."""

    def submit(self, job: Job, on_done: OnDone) -> None:
        if self._closed:
            raise PoolClosed("the eventlet pool is shut down and accepts no more jobs")
        # spawn only schedules the thread, so it is counted before it can run or end.
        self._threads.add(eventlet.spawn(self._run, job, on_done))

    def free_slots(self) -> int:
        return 0 if self._closed else max(0, self._limit - len(self._threads))

    def grow(self, n: int) -> None:
        self._limit += n

    def shrink(self, n: int) -> None:
        idle = self._limit - len(self._threads)
        self._limit -= max(0, min(n, idle, self._limit - 1))

    def shutdown(self, wait: bool) -> None:
        """``wait=True`` waits for every green thread (each reports first); ``wait=False``
        kills them and reports none: the worker is leaving and will not ack them."""
        self._closed = True
        threads = list(self._threads)
        if not wait:
            self._abandoned = True
            hub = hubs.get_hub()
            for thread in threads:
                # eventlet's kill switches into the thread at once and runs its cleanup before
                # returning; scheduled on the hub, the kills land once shutdown has returned.
                hub.schedule_call_global(0, thread.kill)
            return
        for thread in threads:
            try:
                thread.wait()
            except GreenletExit:
                pass  # killed by an earlier shutdown(wait=False)

    def _run(self, job: Job, on_done: OnDone) -> None:
        begin = time.perf_counter()
        # The soft limit reaches the task where it next yields (the usual case for a task stuck
        # on I/O); a task computing without yielding never sees it. That is also why there is
        # no hard limit here: see the README.
        soft = SoftTimeLimitExceeded(f"soft time limit ({job.soft_time_limit} s) exceeded")
        try:
            with Timeout(job.soft_time_limit, soft):  # eventlet timeouts start when made
                outcome = self.context.runner(job)
        except GreenletExit:
            raise  # killed by shutdown(wait=False): abandoned, never reported
        except BaseException as exc:  # incl. SystemExit: the slot must live
            outcome = Outcome.failed(job, exc, time.perf_counter() - begin)
        finally:
            self._threads.discard(eventlet.getcurrent())  # before on_done: the worker refills
        if not self._abandoned:
            report_done(on_done, job, outcome)
