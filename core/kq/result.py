"""Handles on outcomes: AsyncResult (one task, stored by a worker), GroupResult (many tasks
started together) and EagerResult (run here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from .backend import StoredResult
from .current import current_app, current_request
from .exceptions import KQError, TaskRevoked
from .exceptions import TimeoutError as ResultTimeout
from .protocol import ResultMeta, decode_result, encode_result, exception_from_meta, utcnow
from .states import EXCEPTION_STATES, FAILURE, PENDING, READY_STATES, REVOKED, SUCCESS

#: Where a group's member ids are kept (``GroupResult.save``, and every chord's header), apart
#: from any task's result.
MEMBERS_KEY = "{}.members"
#: Longest a GroupResult waits on one member before it looks at all of them again (seconds).
GROUP_WAIT_SLICE = 0.5


def _outcome(meta: ResultMeta, propagate: bool, exc: BaseException | None = None) -> Any:
    if meta.state not in EXCEPTION_STATES:
        return meta.result
    if meta.state == REVOKED and propagate:
        raise TaskRevoked(f"task {meta.task_id} was revoked: {exception_from_meta(meta.result)}")
    error = exc if exc is not None else exception_from_meta(meta.result)
    raised_by = meta.result.get("raised_by") if isinstance(meta.result, Mapping) else None
    if raised_by and raised_by != meta.task_id and hasattr(error, "add_note"):
        # A workflow step that did not run because an earlier task failed (kq.canvas.wire).
        error.add_note(f"raised by task {raised_by}; task {meta.task_id} did not run")
    if propagate:
        raise error
    return error


def _refuse_inside_task() -> None:
    request = current_request()
    if request is not None and not request.is_eager:
        raise KQError(
            "never call result.get() inside a task: it can deadlock the worker; chain the tasks instead"
        )


def _decode(app: Any, stored: StoredResult | None) -> ResultMeta | None:
    if stored is None:
        return None
    return decode_result(stored.payload, app.serializers, app.conf.result_serializer)


def read_many(app: Any, task_ids: Sequence[str]) -> list[ResultMeta | None]:
    """The results of ``task_ids`` in order (``None`` where there is none), in one backend
    round trip where the backend allows."""
    return [_decode(app, stored) for stored in app.backend.get_many(task_ids)]


def save_groups(app: Any, groups: Sequence[tuple[str, Sequence[str | None]]]) -> None:
    """Record the member ids of each ``(group_id, member_ids)`` in one store, expiring with the
    results. A chord's header is recorded before any of its tasks is sent, so whichever worker
    finishes the header last can read every result in order. (A nested group without an id is
    recorded as ``None``; :func:`group_members` then finds no group.)"""
    serializer, now = app.conf.result_serializer, utcnow()
    app.backend.store_many(
        [
            StoredResult(
                key,
                SUCCESS,
                encode_result(
                    ResultMeta(task_id=key, state=SUCCESS, result=list(ids), date_done=now, name="kq.group"),
                    app.serializers,
                    serializer,
                ),
            )
            for key, ids in ((MEMBERS_KEY.format(group_id), ids) for group_id, ids in groups)
        ],
        app.conf.result_expires,
    )


def group_members(app: Any, group_id: str) -> list[str] | None:
    """The member ids recorded for ``group_id``, or ``None`` if there is no usable record."""
    meta = _decode(app, app.backend.get(MEMBERS_KEY.format(group_id)))
    if meta is None or not isinstance(meta.result, list):
        return None
    if not all(isinstance(member, str) for member in meta.result):
        return None
    return meta.result


class _StatePredicates:
    """``ready``/``successful``/``failed``, derived from ``state`` for both result kinds."""

    if TYPE_CHECKING:  # each subclass defines it as a property

        @property
        def state(self) -> str: ...

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE


class AsyncResult(_StatePredicates):
    """The outcome of a task sent to a worker, read from the app's result backend."""

    def __init__(
        self,
        id: str,
        app: Any = None,
        task_name: str | None = None,
        parent: AsyncResult | GroupResult | None = None,
    ) -> None:
        self.id = id
        self.app = app if app is not None else current_app()
        self.task_name = task_name
        #: The result of the step before this one in a workflow (a chain's previous task, a
        #: chord's header), when this handle came from sending the workflow.
        self.parent = parent
        self._cache: ResultMeta | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id} {self.state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _meta(self) -> ResultMeta | None:
        if self._cache is None:
            meta: ResultMeta | None = self.app.read_result(self.id)
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
    def info(self) -> Any:
        """What the task says now: the meta of a custom state (``update_state``, e.g. progress),
        the reason of a RETRY, the STARTED details, or once ready the value or exception."""
        return self.result

    @property
    def traceback(self) -> str | None:
        meta = self._meta()
        return None if meta is None else meta.traceback

    @property
    def date_done(self) -> datetime | None:
        meta = self._meta()
        return None if meta is None else meta.date_done

    def revoke(self, terminate: bool = False, signal: str | int = "SIGTERM") -> None:
        """Revoke the task: no worker starts it; with ``terminate`` a worker running it stops it
        where its pool can (``App.revoke``, docs/tasks.md "Revoking")."""
        self.app.revoke(self.id, terminate=terminate, signal=signal)

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        Raises :class:`kq.exceptions.TimeoutError` after ``timeout`` seconds, the task's own
        exception if it failed (unless ``propagate=False``, which returns it), and
        :class:`kq.exceptions.TaskRevoked` if it was revoked or expired.
        """
        _refuse_inside_task()
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


class GroupResult:
    """The outcomes of tasks started together (a group, a chord's header), in their order.

    ``id`` is the group's id; a group that never ran because an earlier step of its chain
    failed has that failure stored under it, and reads as failed.
    """

    def __init__(
        self,
        id: str | None,
        results: Sequence[AsyncResult | GroupResult],
        app: Any = None,
        parent: AsyncResult | GroupResult | None = None,
    ) -> None:
        self.id = id
        self.results = list(results)
        self.app = app if app is not None else current_app()
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} of {len(self.results)}>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult | GroupResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult | GroupResult:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupResult) and (other.id, other.results) == (self.id, self.results)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def restore(cls, group_id: str, app: Any = None) -> GroupResult | None:
        """The group saved under ``group_id`` with :meth:`save` (every chord header is)."""
        app = app if app is not None else current_app()
        ids = group_members(app, group_id)
        return None if ids is None else cls(group_id, [AsyncResult(i, app) for i in ids], app)

    def save(self) -> None:
        """Record the member ids, so any process can :meth:`restore` the group by its id."""
        if self.id is None:
            raise KQError("a GroupResult without an id cannot be saved")
        save_groups(self.app, [(self.id, [r.id for r in self.results])])

    def _leaves(self) -> list[AsyncResult]:
        return [leaf for r in self.results for leaf in (r._leaves() if isinstance(r, GroupResult) else [r])]

    def _read(self) -> tuple[list[ResultMeta | None], ResultMeta | None]:
        """Every leaf's result (cached ones not read again) and the group's own, in one read."""
        leaves = self._leaves()
        unread = [leaf for leaf in leaves if leaf._cache is None]
        found = read_many(self.app, [leaf.id for leaf in unread] + ([self.id] if self.id else []))
        own = found.pop() if self.id else None
        fresh = {}
        for leaf, meta in zip(unread, found, strict=True):
            fresh[leaf.id] = meta
            if meta is not None and meta.state in READY_STATES:
                leaf._cache = meta
        metas = [leaf._cache or fresh.get(leaf.id) for leaf in leaves]
        return metas, own if own is not None and own.state in EXCEPTION_STATES else None

    def completed_count(self) -> int:
        """How many member tasks have succeeded."""
        metas, _ = self._read()
        return sum(1 for meta in metas if meta is not None and meta.state == SUCCESS)

    def ready(self) -> bool:
        metas, own = self._read()
        return own is not None or all(m is not None and m.state in READY_STATES for m in metas)

    def successful(self) -> bool:
        metas, own = self._read()
        return own is None and all(m is not None and m.state == SUCCESS for m in metas)

    def failed(self) -> bool:
        metas, own = self._read()
        return own is not None or any(m is not None and m.state == FAILURE for m in metas)

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """Wait for every member and return their values in order (nested groups as lists).

        With ``propagate`` (the default) the first failure seen is raised as soon as it is
        seen, without waiting for the other members; otherwise failures are returned in place.
        Raises :class:`kq.exceptions.TimeoutError` after ``timeout`` seconds.
        """
        _refuse_inside_task()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            metas, own = self._read()
            if own is not None:  # the group itself failed: raised, or its exception when not propagating
                return cast("list[Any]", _outcome(own, propagate))
            failures = [m for m in metas if m is not None and m.state in EXCEPTION_STATES]
            if propagate and failures:
                _outcome(failures[0], True)
            pending = [
                leaf
                for leaf, m in zip(self._leaves(), metas, strict=True)
                if m is None or m.state not in READY_STATES
            ]
            if not pending:
                return self._values(propagate)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ResultTimeout(
                    f"group {self.id}: {len(pending)} of {len(metas)} tasks did not finish within {timeout} s"
                )
            # Tasks mostly finish in the order they were sent: waiting for the last one
            # means one more read usually finds every other done as well.
            slice_ = GROUP_WAIT_SLICE if remaining is None else min(GROUP_WAIT_SLICE, remaining)
            self.app.wait_for_result(pending[-1].id, slice_)

    def _values(self, propagate: bool) -> list[Any]:
        # Every leaf is ready by now, so each AsyncResult has its result cached.
        return [
            r._values(propagate)
            if isinstance(r, GroupResult)
            else _outcome(cast(ResultMeta, r._cache), propagate)
            for r in self.results
        ]

    async def get_async(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """:meth:`get` for asyncio code: waits in a thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.get, timeout, propagate)

    def revoke(self, terminate: bool = False, signal: str | int = "SIGTERM") -> None:
        """Revoke every member task in one call (see :meth:`AsyncResult.revoke`)."""
        self.app.revoke([leaf.id for leaf in self._leaves()], terminate=terminate, signal=signal)

    def forget(self) -> None:
        """Delete every member's stored result."""
        for leaf in self._leaves():
            leaf.forget()


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

    info = result

    @property
    def traceback(self) -> str | None:
        return self._meta.traceback

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        return _outcome(self._meta, propagate, self._exception)
