"""The asyncio pool: ``async def`` tasks run as coroutines on one event loop.

The loop runs in a thread of its own, so the worker's consumer thread stays as it is; jobs
cross over with ``call_soon_threadsafe`` and each becomes an asyncio task. ``concurrency`` is
a bound on jobs in flight, not a number of workers: a slot costs one coroutine.

Per job, in the loop thread:

- an ``async def`` task: the runner's blocking steps (``prepare``: find the task, record
  STARTED; ``finish``: store the result, with retries) run in a small thread executor, and the
  body is awaited on the loop between them, so a task that awaits never holds up the others.
  Its time limits: :mod:`kq_asyncio.limits`.
- a plain ``def`` task, or any job when the pool was given another runner than kq's (the
  pool contract's probe): the whole job runs in a thread of its own, so it cannot block the
  loop, under limits enforced as far as a thread allows (:mod:`kq_asyncio.threads`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kq.exceptions import PoolClosed, TimeLimitExceeded
from kq.execution import Runner, execute_async
from kq.pool import Job, Outcome, Pool, PoolCapabilities, PoolContext, report_done

from .limits import limited
from .threads import run_in_thread

log = logging.getLogger("kq.pool.asyncio")

#: Default ``--concurrency``; README.md explains the number.
DEFAULT_CONCURRENCY = 100

OnDone = Callable[[Job, Outcome], None]


class AsyncioPool(Pool):
    """Runs jobs on one event loop in a thread of its own, at most ``concurrency`` at once."""

    capabilities = PoolCapabilities(
        soft_time_limit=True, hard_time_limit=True, autoscale=True, async_tasks=True
    )

    def __init__(self, context: PoolContext) -> None:
        super().__init__(context)
        runner = context.runner
        #: kq's runner, whose steps the pool can take apart; None for any other runner.
        self._runner = runner if isinstance(runner, Runner) else None
        self._size = context.concurrency
        self._lock = threading.Lock()
        self._busy = 0  # submitted and not reported
        self._closed = False
        self._abandoned = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="kq-asyncio-loop", daemon=True)
        # prepare/finish only: short blocking calls, so a few threads serve many coroutines.
        self._io = ThreadPoolExecutor(thread_name_prefix="kq-asyncio-io")
        # The rest is touched only in the loop thread.
        self._stopping = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()

    @property
    def concurrency(self) -> int:
        return self._size

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            if self._closed:
                raise PoolClosed("the asyncio pool is shut down and accepts no more jobs")
            self._busy += 1
            # Under the lock: shutdown's own callbacks are queued after every submitted job.
            self._loop.call_soon_threadsafe(self._start_job, job, on_done)

    def free_slots(self) -> int:
        if self._closed:
            return 0
        return max(0, self._size - self._busy)

    def grow(self, n: int) -> None:
        with self._lock:
            self._size += n

    def shrink(self, n: int) -> None:
        with self._lock:
            self._size -= max(0, min(n, self._size - self._busy, self._size - 1))

    def shutdown(self, wait: bool) -> None:
        """``wait=True``: running jobs finish and are reported, then the loop stops.
        ``wait=False``: cancel them and report none (the worker is leaving and will not ack
        them); returns at once. A sync job in its thread runs on unreported."""
        with self._lock:
            first = not self._closed
            abandon = not wait and not self._abandoned
            self._closed = True
            self._abandoned = self._abandoned or abandon
        try:
            if first:
                self._loop.call_soon_threadsafe(self._stopping.set)
            if abandon:
                self._loop.call_soon_threadsafe(self._cancel_jobs)
        except RuntimeError:  # the loop is closed: an earlier shutdown has finished
            pass
        if wait:
            self._thread.join()

    # -- the loop thread ------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._until_stopped())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()
            self._io.shutdown(wait=not self._abandoned)

    async def _until_stopped(self) -> None:
        """Serve until shutdown, then until the jobs have ended; then cancel what the tasks
        left running in the background, as ``asyncio.run`` does."""
        await self._stopping.wait()
        while self._jobs:
            await asyncio.wait(set(self._jobs))
        leftovers = asyncio.all_tasks() - {asyncio.current_task()}
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def _start_job(self, job: Job, on_done: OnDone) -> None:
        if self._abandoned:
            return
        task = self._loop.create_task(
            self._run(job, on_done), name=f"kq {job.message.task}[{job.message.id}]"
        )
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _cancel_jobs(self) -> None:
        for task in self._jobs:
            task.cancel()

    async def _run(self, job: Job, on_done: OnDone) -> None:
        outcome = await self._outcome(job)
        with self._lock:
            self._busy -= 1  # before on_done: the worker refills as soon as it hears
            if self._abandoned:
                return
        report_done(on_done, job, outcome)

    async def _outcome(self, job: Job) -> Outcome:
        begin = time.perf_counter()
        try:
            runner = self._runner
            if runner is not None and _is_async(runner, job):
                return await self._run_async(runner, job)
            return await run_in_thread(job, self.context.runner, self.context.lost)
        except asyncio.CancelledError as exc:
            if self._abandoned:
                raise
            # Not the pool's doing: the task cancelled itself, or something it awaited was
            # cancelled. It could not end; a CancelledError must not reach the client's
            # get(), where it would look like its own cancellation.
            stopped = RuntimeError(f"the task was cancelled before it ended ({exc!r})")
            return await self._loop.run_in_executor(
                self._io, self.context.lost, job, stopped, time.perf_counter() - begin
            )
        except Exception as exc:  # a bug in kq or a plugin: report it, never lose the slot
            log.exception("kq: internal error running task %s", job.message.id)
            return Outcome.failed(job, exc, time.perf_counter() - begin)

    async def _run_async(self, runner: Runner, job: Job) -> Outcome:
        """prepare in a thread, the body on the loop under its limits, finish in a thread."""
        loop = self._loop
        prepared = await loop.run_in_executor(self._io, runner.prepare, job)
        if isinstance(prepared, Outcome):  # expired, or not to run
            return prepared
        begin = time.perf_counter()
        body = execute_async(prepared.task, prepared.request, runner.hooks)
        try:
            done = await limited(body, job.soft_time_limit, job.time_limit)
        except TimeLimitExceeded as exc:
            return await loop.run_in_executor(
                self._io, self.context.lost, job, exc, time.perf_counter() - begin
            )
        return await loop.run_in_executor(self._io, runner.finish, prepared, done)


def _is_async(runner: Runner, job: Job) -> bool:
    """Whether the job's task is ``async def`` (its function, or a Task subclass's run).
    An unregistered task is not: the runner reports it, in a thread like sync tasks."""
    task: Any = runner.app.tasks.get(job.message.task)
    return task is not None and (
        inspect.iscoroutinefunction(task.fun) or inspect.iscoroutinefunction(task.run)
    )
