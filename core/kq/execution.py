"""Running one task: the code path shared by the worker's pools and eager ``task.apply()``.

:class:`Runner` is what a pool calls for each job. It runs in the pool's execution context
(a thread, a child process, a greenlet), so it does the per-task work there: set the request,
fire the task hooks, call the function, store the result. It never raises; it returns an
:class:`~kq.pool.Outcome` for the worker to ack on.

The work is split in three so event-loop pools can await the middle step:
:meth:`Runner.prepare` (look the task up, skip expired ones, record STARTED),
:func:`execute` / :func:`execute_async` (the task body and its hooks), and
:meth:`Runner.finish` (store the result, then send what the message's workflow says comes
next, :func:`kq.canvas.continuation.after_task`; decide ack or requeue). :meth:`Runner.lost` is the
kernel's policy for a job that could not run to its end (its process died, a hard time limit).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import traceback as tb_module
from collections.abc import Callable
from typing import Any

import attrs

from .canvas.continuation import after_task
from .canvas.wire import Cause
from .current import request_var, task_var
from .exceptions import BackendUnavailable, NotRegistered, Retry, TaskRevoked, TimeLimitExceeded
from .pool import Job, Outcome
from .protocol import ResultMeta, TaskMessage, exception_to_meta, utcnow
from .request import Request
from .result import EagerResult
from .states import FAILURE, RETRY, REVOKED, STARTED, SUCCESS
from .unique import release_for

log = logging.getLogger("kq.execution")

#: The rejection reason of an expired task's message (beside ``unknown-task``, ``decode``, ...).
EXPIRED = "expired"


@attrs.frozen
class TaskHooks:
    """The task lifecycle hooks, resolved once; ``None`` where no plugin implements one."""

    prerun: Callable[..., None] | None
    postrun: Callable[..., None] | None
    success: Callable[..., None] | None
    failure: Callable[..., None] | None
    revoked: Callable[..., None] | None
    retry: Callable[..., None] | None

    @classmethod
    def of(cls, plugins: Any) -> TaskHooks:
        return cls(
            prerun=plugins.notifier("kq_task_prerun"),
            postrun=plugins.notifier("kq_task_postrun"),
            success=plugins.notifier("kq_task_success"),
            failure=plugins.notifier("kq_task_failure"),
            revoked=plugins.notifier("kq_task_revoked"),
            retry=plugins.notifier("kq_task_retry"),
        )


@attrs.frozen
class Execution:
    """How one call of a task body ended (for RETRY, ``retval`` is the :class:`Retry`)."""

    state: str
    retval: Any
    exception: BaseException | None
    traceback: str | None
    runtime: float


def _succeeded(task: Any, request: Request, hooks: TaskHooks, retval: Any, runtime: float) -> Execution:
    if hooks.success:
        hooks.success(task=task, request=request, retval=retval)
    return _ended(task, request, hooks, Execution(SUCCESS, retval, None, None, runtime))


def _failed(task: Any, request: Request, hooks: TaskHooks, exc: BaseException, runtime: float) -> Execution:
    text = tb_module.format_exc()
    if hooks.failure:
        hooks.failure(task=task, request=request, exc=exc, traceback=text)
    return _ended(task, request, hooks, Execution(FAILURE, None, exc, text, runtime))


def _raised(task: Any, request: Request, hooks: TaskHooks, exc: BaseException, runtime: float) -> Execution:
    """The body raised ``exc``: a retry it asked for, an automatic retry (``autoretry_for``,
    while retries are left), or a failure with ``exc`` itself."""
    retry = exc if isinstance(exc, Retry) else _autoretry(task, request, exc)
    if retry is None:
        return _failed(task, request, hooks, exc, runtime)
    reason = retry.exc if retry.exc is not None else retry
    if hooks.retry:
        hooks.retry(task=task, request=request, reason=reason)
    return _ended(task, request, hooks, Execution(RETRY, retry, reason, tb_module.format_exc(), runtime))


def _autoretry(task: Any, request: Request, exc: BaseException) -> Retry | None:
    policy = task.retry_policy
    if not (policy.autoretry_for and isinstance(exc, policy.autoretry_for)):
        return None
    if policy.exhausted(request.retries) or request.message is None:
        return None  # fail with the original exception, not MaxRetriesExceededError
    try:
        task.retry(exc=exc, countdown=policy.autoretry_delay(request.retries))
    except Retry as retry:
        return retry
    return None


def _ended(task: Any, request: Request, hooks: TaskHooks, done: Execution) -> Execution:
    if hooks.postrun:
        hooks.postrun(task=task, request=request, state=done.state, retval=done.retval)
    return done


def execute(task: Any, request: Request, hooks: TaskHooks) -> Execution:
    """Call the task body with ``request`` in effect, firing the hooks around it.

    An ``async def`` task run outside an event-loop pool gets an event loop of its own.
    """
    token, task_token = request_var.set(request), task_var.set(task)
    try:
        if hooks.prerun:
            hooks.prerun(task=task, request=request)
        start = time.perf_counter()
        try:
            retval = task.run(*request.args, **request.kwargs)
            if inspect.iscoroutine(retval):
                retval = asyncio.run(retval)
        except (Exception, SystemExit) as exc:  # sys.exit() in a task fails the task, not the pool
            return _raised(task, request, hooks, exc, time.perf_counter() - start)
        return _succeeded(task, request, hooks, retval, time.perf_counter() - start)
    finally:
        task_var.reset(task_token)
        request_var.reset(token)


async def execute_async(task: Any, request: Request, hooks: TaskHooks) -> Execution:
    """:func:`execute` for event-loop pools: an ``async def`` body is awaited on the running
    loop, so a task awaiting I/O does not block the others."""
    token, task_token = request_var.set(request), task_var.set(task)
    try:
        if hooks.prerun:
            hooks.prerun(task=task, request=request)
        start = time.perf_counter()
        try:
            retval = task.run(*request.args, **request.kwargs)
            if inspect.isawaitable(retval):
                retval = await retval
        except (Exception, SystemExit) as exc:
            return _raised(task, request, hooks, exc, time.perf_counter() - start)
        return _succeeded(task, request, hooks, retval, time.perf_counter() - start)
    finally:
        task_var.reset(task_token)
        request_var.reset(token)


def run_eagerly(task: Any, message: TaskMessage) -> EagerResult:
    """Run a task in this thread, as a worker would, without a broker or a backend; a retry
    runs the next attempt at once (its countdown is not waited for)."""
    hooks = TaskHooks.of(task.app.plugins)
    while True:
        done = execute(task, Request.from_message(message, is_eager=True), hooks)
        if done.state != RETRY or done.retval.message is None:
            break
        message = done.retval.message
    value = done.retval if done.exception is None else exception_to_meta(done.exception)
    meta = ResultMeta(
        task_id=message.id,
        state=done.state,
        result=value,
        traceback=done.traceback,
        date_done=utcnow(),
        name=task.name,
    )
    return EagerResult(meta, done.exception)


@attrs.frozen
class Prepared:
    """A job that is ready to run: its task and request."""

    job: Job
    task: Any
    request: Request
    keep_result: bool


class Runner:
    """Runs jobs for a worker: ``runner(job) -> Outcome``. Built once per worker process."""

    def __init__(self, app: Any, hostname: str) -> None:
        self.app = app
        self.hostname = hostname
        self.hooks = TaskHooks.of(app.plugins)

    def __call__(self, job: Job) -> Outcome:
        start = time.perf_counter()
        try:
            prepared = self.prepare(job)
            if isinstance(prepared, Outcome):
                return prepared
            return self.finish(prepared, execute(prepared.task, prepared.request, self.hooks))
        except Exception as exc:  # a bug in kq or a plugin: report it, never kill the pool
            return self._internal_error(job, exc, start)

    def _internal_error(self, job: Job, exc: Exception, start: float) -> Outcome:
        log.exception("kq: internal error running task %s", job.message.id)
        return Outcome(job.message.id, FAILURE, time.perf_counter() - start, error=f"internal error: {exc!r}")

    def prepare(self, job: Job) -> Prepared | Outcome:
        """Everything before the task body; an Outcome when the body must not run."""
        message = job.message
        task = self.app.tasks.get(message.task)
        request = Request.from_message(
            message, hostname=self.hostname, queue=job.queue, redelivered=job.redelivered
        )
        if task is None:
            error = NotRegistered(f"task {message.task!r} is not registered in this worker")
            self._store(message, job.queue, FAILURE, exception_to_meta(error))
            after_task(self.app, message, request, cause=Cause.of_exception(message.id, error))
            return Outcome(message.id, FAILURE, 0.0, error=str(error))
        # A chord's body reads its header's results, whatever the header tasks' settings.
        keep_result = bool(self.app.conf.result_backend) and (
            message.chord is not None or not (message.ignore_result or task.ignore_result)
        )
        if message.is_expired():
            return self.expired(job, request)
        if keep_result and task.track_started:
            self._store(message, job.queue, STARTED, {"pid": os.getpid(), "hostname": self.hostname})
        return Prepared(job, task, request, keep_result)

    def expired(self, job: Job, request: Request | None = None) -> Outcome:
        """Skip a job whose ``expires`` has passed: REVOKED as Celery stores it, and an Outcome
        asking the worker to dead-letter the message (reason ``expired: ...``) rather than ack
        it, so that what never ran can be found and replayed (``kq dlq``)."""
        expires = job.message.expires
        detail = f"task expired at {expires.isoformat()}" if expires else "task expired"
        outcome = self.revoked(job, detail, request)
        return attrs.evolve(outcome, dead_letter=f"{EXPIRED}: {detail}")

    def revoked(self, job: Job, reason: str, request: Request | None = None) -> Outcome:
        """Skip a job that must not run (expired, or revoked: the worker calls this for those in
        its own process): fire ``kq_task_revoked``, store REVOKED, tell its workflow."""
        message = job.message
        if request is None:
            request = Request.from_message(
                message, hostname=self.hostname, queue=job.queue, redelivered=job.redelivered
            )
        if self.hooks.revoked:
            self.hooks.revoked(request=request, reason=reason)
        revoked = TaskRevoked(reason)
        self._store(message, job.queue, REVOKED, exception_to_meta(revoked))
        release_for(self.app, message)
        after_task(self.app, message, request, cause=Cause.of_exception(message.id, revoked))
        return Outcome(message.id, REVOKED, 0.0, error=reason)

    def finish(self, prepared: Prepared, done: Execution) -> Outcome:
        """Store the outcome of the body; ask for a requeue if it could not be stored."""
        message, queue = prepared.job.message, prepared.job.queue
        if done.state == RETRY:
            return self._retry(prepared, done)
        if done.exception is not None:
            log.error(
                "kq: task %s[%s] failed in %.3fs: %r", message.task, message.id, done.runtime, done.exception
            )
            error = f"{type(done.exception).__name__}: {done.exception}"
            keep = prepared.keep_result or (
                prepared.task.store_errors_even_if_ignored and bool(self.app.conf.result_backend)
            )
            stored = not keep or self._store(
                message, queue, FAILURE, exception_to_meta(done.exception), done.traceback
            )
        else:
            log.debug("kq: task %s[%s] succeeded in %.3fs", message.task, message.id, done.runtime)
            error = None
            stored = not prepared.keep_result or self._store(message, queue, SUCCESS, done.retval)
        if not stored and prepared.task.acks_late:
            # The outcome exists nowhere: let the task run again rather than lose it.
            return Outcome(message.id, done.state, done.runtime, error="result not stored", requeue=True)
        release_for(self.app, message)
        if done.exception is None:
            after_task(self.app, message, prepared.request, value=done.retval)
        else:
            after_task(
                self.app,
                message,
                prepared.request,
                cause=Cause.of_exception(message.id, done.exception, done.traceback),
            )
        return Outcome(message.id, done.state, done.runtime, error=error)

    def _retry(self, prepared: Prepared, done: Execution) -> Outcome:
        """Record RETRY, then send the next attempt (same id, ``retries`` one higher, the
        workflow it carries kept): in this order, so a next attempt that finishes at once is
        never overwritten by the RETRY of this one."""
        message, queue = prepared.job.message, prepared.job.queue
        retry: Retry = done.retval
        log.info(
            "kq: task %s[%s] will retry%s: %r",
            message.task,
            message.id,
            f" at {retry.when}" if retry.when else "",
            done.exception,
        )
        if prepared.keep_result:
            self._store(message, queue, RETRY, exception_to_meta(done.exception or retry), done.traceback)
        if retry.message is not None:
            try:
                self.app.publish(
                    retry.message, retry.queue or queue, prepared.task.serializer, prepared.task.compression
                )
            except Exception as exc:  # broker gone past the publish retries: the task fails
                log.error("kq: could not send the retry of task %s[%s]: %r", message.task, message.id, exc)
                if prepared.task.acks_late:
                    return Outcome(message.id, RETRY, done.runtime, error="retry not sent", requeue=True)
                if prepared.keep_result:
                    self._store(message, queue, FAILURE, exception_to_meta(exc))
                after_task(self.app, message, prepared.request, cause=Cause.of_exception(message.id, exc))
                return Outcome(message.id, FAILURE, done.runtime, error=f"retry not sent: {exc!r}")
        return Outcome(message.id, RETRY, done.runtime, error=repr(done.exception))

    def lost(self, job: Job, exc: BaseException, runtime: float = 0.0) -> Outcome:
        """The job could not run to its end (``WorkerLostError``, ``TimeLimitExceeded``, or
        ``TaskRevoked`` when the pool terminated it: that one is stored REVOKED).

        With ``acks_late`` and ``reject_on_worker_lost`` the message goes back to its queue;
        a redelivered job that hits its hard time limit fails instead, so it cannot loop.
        Otherwise the task is marked FAILURE with ``exc``. Pools call this in the worker's
        process, where the job's own process can no longer report.
        """
        message = job.message
        if isinstance(exc, TaskRevoked):  # the pool stopped it for revoke(terminate=True)
            return self.revoked(job, str(exc))
        task = self.app.tasks.get(message.task)
        looping = isinstance(exc, TimeLimitExceeded) and job.redelivered
        if task is not None and task.acks_late and task.reject_on_worker_lost and not looping:
            log.warning("kq: task %s[%s] lost (%s); returning it to the queue", message.task, message.id, exc)
            return Outcome(message.id, FAILURE, runtime, error=str(exc), requeue=True)
        log.error("kq: task %s[%s] lost: %r", message.task, message.id, exc)
        request = Request.from_message(
            message, hostname=self.hostname, queue=job.queue, redelivered=job.redelivered
        )
        if self.hooks.failure and task is not None:
            self.hooks.failure(task=task, request=request, exc=exc, traceback="")
        self._store(message, job.queue, FAILURE, exception_to_meta(exc))
        release_for(self.app, message)
        after_task(self.app, message, request, cause=Cause.of_exception(message.id, exc))
        return Outcome(message.id, FAILURE, runtime, error=f"{type(exc).__name__}: {exc}")

    def _store(
        self, message: TaskMessage, queue: str, state: str, result: Any, traceback: str | None = None
    ) -> bool:
        """Store a result, retrying while the backend is unreachable; False if it never could.

        Only ``BackendUnavailable`` (and ``OSError``) are retried: any other error is permanent
        and is logged at once.
        """
        meta = ResultMeta(
            task_id=message.id,
            state=state,
            result=result,
            traceback=traceback,
            date_done=utcnow(),
            name=message.task,
            worker=self.hostname,
            retries=message.retries,
            queue=queue,
        )
        deadline = time.monotonic() + self.app.conf.result_store_timeout
        delay = 0.1
        while True:
            try:
                self.app.store_result(meta, message.reply_to)
                return True
            except (BackendUnavailable, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    log.error(
                        "kq: could not store the result of task %s (%s): %s", message.id, message.task, exc
                    )
                    return False
                if delay == 0.1:
                    log.warning(
                        "kq: result backend unavailable (%s); retrying for up to %.0f s",
                        exc,
                        self.app.conf.result_store_timeout,
                    )
            except Exception as exc:  # permanent: retrying cannot help
                log.error("kq: could not store the result of task %s (%s): %r", message.id, message.task, exc)
                return False
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
