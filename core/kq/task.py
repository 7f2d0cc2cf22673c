"""Tasks: a function registered with an app under a name, callable locally or through a broker.

``Task.app`` is the :class:`~kq.app.App` that registered it; it is typed ``Any`` here because the
app module imports this one, and kq keeps its import graph free of cycles.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from .canvas.mapping import chunks, xmap, xstarmap
from .canvas.signature import Signature
from .canvas.wire import CALL_OPTIONS, as_mapping, as_mappings
from .current import current_request, request_var
from .execution import run_eagerly
from .protocol import TaskMessage, as_utc, utcnow
from .request import Request
from .result import AsyncResult, EagerResult


class Task:
    """A registered task. Created by ``@app.task``; calling it runs the function here and now."""

    def __init__(
        self,
        app: Any,
        fun: Callable[..., Any],
        name: str,
        *,
        bind: bool = False,
        queue: str | None = None,
        acks_late: bool | None = None,
        ignore_result: bool | None = None,
        track_started: bool | None = None,
        serializer: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        reject_on_worker_lost: bool | None = None,
        typing: bool = True,
    ) -> None:
        self.app = app
        self.fun = fun
        self.name = name
        self.bind = bind
        self.queue = queue
        self._acks_late = acks_late
        self._ignore_result = ignore_result
        self._track_started = track_started
        self.serializer = serializer
        self._time_limit = time_limit
        self._soft_time_limit = soft_time_limit
        self._reject_on_worker_lost = reject_on_worker_lost
        self._signature = inspect.signature(fun) if typing else None
        self.__doc__ = fun.__doc__
        self.__name__ = getattr(fun, "__name__", name)
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<kq task {self.name}>"

    # Settings that fall back to the app's configuration when the task does not set them.
    @property
    def acks_late(self) -> bool:
        return self.app.conf.task_acks_late if self._acks_late is None else self._acks_late

    @property
    def ignore_result(self) -> bool:
        return self.app.conf.task_ignore_result if self._ignore_result is None else self._ignore_result

    @property
    def track_started(self) -> bool:
        if self._track_started is None:
            return self.app.conf.task_track_started
        return self._track_started

    @property
    def time_limit(self) -> float | None:
        return self.app.conf.task_time_limit if self._time_limit is None else self._time_limit

    @property
    def soft_time_limit(self) -> float | None:
        if self._soft_time_limit is None:
            return self.app.conf.task_soft_time_limit
        return self._soft_time_limit

    @property
    def reject_on_worker_lost(self) -> bool:
        if self._reject_on_worker_lost is None:
            return self.app.conf.task_reject_on_worker_lost
        return self._reject_on_worker_lost

    @property
    def request(self) -> Request | None:
        """The request of this task's current execution (in a bound task: ``self.request``)."""
        request = current_request()
        return request if request is not None and request.task == self.name else None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task body in this thread (``self`` is passed first when ``bind=True``)."""
        if self.bind:
            return self.fun(self, *args, **kwargs)
        return self.fun(*args, **kwargs)

    __call__ = run

    def _check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        if self._signature is None:
            return
        try:
            if self.bind:
                self._signature.bind(None, *args, **kwargs)
            else:
                self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{self._signature}: {exc}") from None

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the task to a worker with these arguments; shortcut for :meth:`apply_async`."""
        return self.apply_async(args, kwargs)

    async def delay_async(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """:meth:`delay` for asyncio code: the publish runs in a thread, the loop stays free."""
        return await asyncio.to_thread(self.apply_async, args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task to a worker.

        Options: ``countdown`` (seconds) or ``eta`` (datetime) to run later, ``expires``
        (seconds or datetime) after which it is not run, ``queue``, ``priority`` (0-9),
        ``task_id``, ``headers`` (extra message headers), ``serializer``, ``ignore_result``,
        ``time_limit`` and ``soft_time_limit`` (seconds, overriding the task's for this call),
        ``link`` and ``link_error`` (signatures to apply when it succeeds, or fails: see
        docs/canvas.md). ``chain``, ``chord``, ``group_id`` and ``group_index`` are set by the
        canvas.
        """
        unknown = set(options) - CALL_OPTIONS
        if unknown:
            raise TypeError(
                f"{self.name}.apply_async() got unknown option(s) {sorted(unknown)}; "
                f"accepted: {sorted(CALL_OPTIONS)}"
            )
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        self._check_arguments(args, kwargs)
        options.setdefault("queue", self.queue)
        options.setdefault("serializer", self.serializer)
        if options.get("ignore_result") is None:
            options["ignore_result"] = self.ignore_result
        return self.app.send_task(self.name, args, kwargs, **options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
    ) -> EagerResult:
        """Run the task here and now, as a worker would, and return its result without storing it."""
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        self._check_arguments(args, kwargs)
        parent = current_request()
        task_id = task_id or str(uuid.uuid4())
        message = TaskMessage(
            id=task_id, task=self.name, args=args, kwargs=kwargs,
            parent_id=parent.id if parent else None,
            root_id=(parent.root_id or parent.id) if parent else task_id,
        )
        return run_eagerly(self, message)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's spelling
        return self.app.AsyncResult(task_id, task_name=self.name)

    # -- signatures (see kq.canvas) -------------------------------------------------------

    def signature(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                  **options: Any) -> Signature:
        """This task's call as data: to send later, link, or compose into a workflow."""
        return Signature(self.name, args, kwargs, app=self.app).set(**options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """``add.s(2)``: a signature with these (partial) arguments; in a chain it gets the
        previous result as its first argument."""
        return Signature(self.name, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it ignores the previous result in a chain or chord."""
        return Signature(self.name, args, kwargs, immutable=True, app=self.app)

    def map(self, it: Iterable[Any]) -> xmap:
        """One message that calls the task once per item (``task(item)``), in order."""
        return xmap(self.s(), it, app=self.app)

    def starmap(self, it: Iterable[Sequence[Any]]) -> xstarmap:
        """One message that calls ``task(*item)`` per item, in order."""
        return xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Iterable[Sequence[Any]], n: int) -> chunks:
        """``task(*item)`` per item, ``n`` items per message, the messages run as a group."""
        return chunks(self.s(), it, n, app=self.app)


def resolve_time(value: float | timedelta | datetime | None, now: datetime) -> datetime | None:
    """Turn seconds-from-now, a timedelta or a datetime into an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, timedelta):
        return now + value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return now + timedelta(seconds=value)
    raise TypeError(f"expected seconds, a timedelta or a datetime, got {value!r}")


def new_message(
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    countdown: float | None = None,
    eta: datetime | None = None,
    expires: float | timedelta | datetime | None = None,
    priority: int | None = None,
    task_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    ignore_result: bool = False,
    origin: str | None = None,
    reply_to: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    link: Any = None,
    link_error: Any = None,
    chain: Any = None,
    chord: Any = None,
    group_id: str | None = None,
    group_index: int | None = None,
) -> TaskMessage:
    """Build the message for one call, linking it to the task running now (if any).

    The workflow options (signatures or Celery signature mappings) travel in the message's
    ``embed``: ``link`` callbacks, ``link_error`` errbacks, the rest of a ``chain`` (next step
    last), and the ``chord`` body with ``group_id``/``group_index`` for a chord's header task.
    """
    if countdown is not None and eta is not None:
        raise TypeError("give countdown or eta, not both")
    if priority is not None and (not isinstance(priority, int) or not 0 <= priority <= 9):
        raise ValueError(f"priority must be a whole number from 0 to 9, got {priority!r}")
    now = utcnow()
    task_id = task_id or str(uuid.uuid4())
    parent = request_var.get()
    return TaskMessage(
        id=task_id,
        task=name,
        args=tuple(args),
        kwargs=dict(kwargs),
        eta=resolve_time(countdown if countdown is not None else eta, now),
        expires=resolve_time(expires, now),
        priority=priority,
        parent_id=parent.id if parent else None,
        root_id=(parent.root_id or parent.id) if parent else task_id,
        ignore_result=ignore_result,
        origin=origin,
        reply_to=reply_to,
        timelimit=(time_limit, soft_time_limit),
        extra_headers=dict(headers or {}),
        callbacks=as_mappings(link),
        errbacks=as_mappings(link_error),
        chain=as_mappings(chain),
        chord=None if chord is None else as_mapping(chord),
        group=group_id,
        group_index=group_index,
    )
