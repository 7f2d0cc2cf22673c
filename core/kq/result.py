"""Handles on a task's outcome: AsyncResult (stored by a worker) and EagerResult (run here)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from .current import current_app, current_request
from .exceptions import KQError, TaskRevoked
from .exceptions import TimeoutError as ResultTimeout
from .protocol import ResultMeta, exception_from_meta
from .states import EXCEPTION_STATES, FAILURE, PENDING, READY_STATES, REVOKED, SUCCESS


def _outcome(meta: ResultMeta, propagate: bool, exc: BaseException | None = None) -> Any:
    if meta.state not in EXCEPTION_STATES:
        return meta.result
    if meta.state == REVOKED and propagate:
        raise TaskRevoked(f"task {meta.task_id} was revoked: {exception_from_meta(meta.result)}")
    error = exc if exc is not None else exception_from_meta(meta.result)
    if propagate:
        raise error
    return error


class _StatePredicates:
    """``ready``/``successful``/``failed``, derived from ``state`` for both result kinds."""

    state: str

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE


class AsyncResult(_StatePredicates):
    """The outcome of a task sent to a worker, read from the app's result backend."""

    def __init__(self, id: str, app: Any = None, task_name: str | None = None) -> None:
        self.id = id
        self.app = app if app is not None else current_app()
        self.task_name = task_name
        self._cache: ResultMeta | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id} {self.state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _meta(self) -> ResultMeta | None:
        if self._cache is None:
            meta = self.app.read_result(self.id)
            if meta is not None and meta.state in READY_STATES:
                self._cache = meta  # a ready result never changes
            return meta
        return self._cache

    @property
    def state(self) -> str:
        """PENDING (unknown or waiting), RECEIVED, STARTED, SUCCESS, FAILURE, RETRY or REVOKED."""
        meta = self._meta()
        return meta.state if meta is not None else PENDING

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception for failed tasks, or ``None`` while not ready."""
        meta = self._meta()
        return None if meta is None else _outcome(meta, propagate=False)

    @property
    def traceback(self) -> str | None:
        meta = self._meta()
        return None if meta is None else meta.traceback

    @property
    def date_done(self) -> datetime | None:
        meta = self._meta()
        return None if meta is None else meta.date_done

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        Raises :class:`kq.exceptions.TimeoutError` after ``timeout`` seconds, the task's own
        exception if it failed (unless ``propagate=False``, which returns it), and
        :class:`kq.exceptions.TaskRevoked` if it was revoked or expired.
        """
        if current_request() is not None and not current_request().is_eager:
            raise KQError(
                "never call result.get() inside a task: it can deadlock the worker; "
                "chain the tasks instead"
            )
        meta = self._cache or self.app.wait_for_result(self.id, timeout)
        if meta is None or meta.state not in READY_STATES:
            state = meta.state if meta is not None else PENDING
            raise ResultTimeout(f"task {self.id} did not finish within {timeout} s (state {state})")
        self._cache = meta
        return _outcome(meta, propagate)

    async def get_async(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """:meth:`get` for asyncio code: waits in a thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.get, timeout, propagate)

    def forget(self) -> None:
        """Delete the stored result."""
        self._cache = None
        self.app.forget_result(self.id)


class EagerResult(_StatePredicates):
    """The outcome of :meth:`Task.apply`: already known, nothing stored.

    It keeps the original exception object, so ``get()`` re-raises exactly what the task raised.
    """

    def __init__(self, meta: ResultMeta, exception: BaseException | None = None) -> None:
        self._meta = meta
        self._exception = exception
        self.id = meta.task_id

    def __repr__(self) -> str:
        return f"<EagerResult {self.id} {self.state}>"

    @property
    def state(self) -> str:
        return self._meta.state

    status = state

    @property
    def result(self) -> Any:
        return _outcome(self._meta, False, self._exception)

    @property
    def traceback(self) -> str | None:
        return self._meta.traceback

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        return _outcome(self._meta, propagate, self._exception)
