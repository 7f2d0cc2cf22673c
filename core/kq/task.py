"""Tasks: a function registered with an app under a name, callable locally or through a broker.

``Task.app`` is the :class:`~kq.app.App` that registered it; it is typed ``Any`` here because the
app module imports this one, and kq keeps its import graph free of cycles.

``Task[P, R]`` carries the wrapped function's parameters ``P`` and return type ``R`` so that a
type checker rejects ``add.delay("a")`` for ``add(x: int, y: int)`` just as it rejects
``add("a")``; what is checked and what is not is listed in docs/tasks.md ("Type checking").
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar

import attrs

from .canvas.mapping import chunks, xmap, xstarmap
from .canvas.signature import Signature
from .canvas.wire import CALL_OPTIONS, as_mapping, as_mappings
from .current import current_request, request_var
from .exceptions import KQError, MaxRetriesExceededError, Retry
from .execution import run_eagerly
from .protocol import ResultMeta, TaskMessage, as_utc, is_text, utcnow
from .ratelimit import Rate, parse_rate
from .request import Request
from .result import AsyncResult, EagerResult
from .retry import RETRY_OPTIONS, RetryPolicy
from .unique import call_key, send_unique

P = ParamSpec("P")
R = TypeVar("R", covariant=True)
_DEFAULT_POLICY = RetryPolicy()
#: Options a task may take from its base class's attributes as well as from ``@app.task``.
CLASS_OPTIONS = frozenset({*RETRY_OPTIONS, "store_errors_even_if_ignored"})


class Task(Generic[P, R]):
    """A registered task. Created by ``@app.task``; calling it runs the function here and now.

    ``P`` and ``R`` are the function's parameters and return type, without the leading ``self``
    of a ``bind=True`` task (callers never pass it).

    A custom base class (``@app.task(base=MyTask)``, ``App(task_cls=MyTask)``) may set the
    options in ``CLASS_OPTIONS`` as class attributes and add methods a bound task can call.
    """

    #: The retry policy's options (kq.retry.RetryPolicy); ``@app.task(...)`` overrides them.
    autoretry_for: tuple[type[BaseException], ...] = _DEFAULT_POLICY.autoretry_for
    max_retries: int | None = _DEFAULT_POLICY.max_retries
    default_retry_delay: float = _DEFAULT_POLICY.default_retry_delay
    retry_backoff: bool | float = False
    retry_backoff_max: float = _DEFAULT_POLICY.retry_backoff_max
    retry_jitter: bool = _DEFAULT_POLICY.retry_jitter
    #: Store the failure of a task with ``ignore_result`` all the same.
    store_errors_even_if_ignored: bool = False

    def __init__(
        self,
        app: Any,
        fun: Callable[..., R],
        name: str,
        *,
        bind: bool = False,
        queue: str | None = None,
        priority: int | None = None,
        acks_late: bool | None = None,
        ignore_result: bool | None = None,
        track_started: bool | None = None,
        serializer: str | None = None,
        compression: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        reject_on_worker_lost: bool | None = None,
        rate_limit: str | float | None = None,
        global_rate_limit: str | float | None = None,
        unique_for: float | None = None,
        typing: bool = True,
        **options: Any,
    ) -> None:
        unknown = options.keys() - CLASS_OPTIONS
        if unknown:
            raise TypeError(f"{name}: unknown task option(s) {sorted(unknown)}")
        for option, value in options.items():
            setattr(self, option, value)
        self.retry_policy = RetryPolicy.of(self)
        self.app = app
        self.fun = fun
        self.name = name
        self.bind = bind
        self.queue = queue
        if priority is not None and (type(priority) is not int or not 0 <= priority <= 9):
            raise ValueError(f"{name}: priority must be a whole number from 0 to 9, got {priority!r}")
        self.priority = priority
        self._acks_late = acks_late
        self._ignore_result = ignore_result
        self._track_started = track_started
        self.serializer = serializer
        #: ``task_compression`` for this task's messages; ``None`` follows the setting.
        self.compression = compression
        self._time_limit = time_limit
        self._soft_time_limit = soft_time_limit
        self._reject_on_worker_lost = reject_on_worker_lost
        self._rate_limit = _rate(name, "rate_limit", rate_limit)
        #: Starts per period across all workers (docs/rate-limits.md); ``None``: no such limit.
        self.global_rate_limit = _rate(name, "global_rate_limit", global_rate_limit)
        if unique_for is not None and (isinstance(unique_for, bool) or not unique_for > 0):
            raise ValueError(f"{name}: unique_for must be a positive number of seconds, got {unique_for!r}")
        #: Seconds a call's key stays claimed at most (docs/tasks.md, "Unique tasks"); ``None``:
        #: calls are unique only when they pass ``unique_key``.
        self.unique_for = unique_for
        self._signature = inspect.signature(fun) if typing else None
        self._positional = _positional_bounds(self._signature, bind)
        self.__doc__ = fun.__doc__
        self.__name__ = getattr(fun, "__name__", name)
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<kq task {self.name}>"

    # Settings that fall back to the app's configuration when the task does not set them.
    @property
    def acks_late(self) -> bool:
        return self.app.conf.task_acks_late if self._acks_late is None else self._acks_late

    # The app's settings are typed Any here (see the module docstring), hence the annotated locals.

    @property
    def ignore_result(self) -> bool:
        if self._ignore_result is None:
            default: bool = self.app.conf.task_ignore_result
            return default
        return self._ignore_result

    @property
    def track_started(self) -> bool:
        if self._track_started is None:
            default: bool = self.app.conf.task_track_started
            return default
        return self._track_started

    @property
    def time_limit(self) -> float | None:
        if self._time_limit is None:
            default: float | None = self.app.conf.task_time_limit
            return default
        return self._time_limit

    @property
    def soft_time_limit(self) -> float | None:
        if self._soft_time_limit is None:
            default: float | None = self.app.conf.task_soft_time_limit
            return default
        return self._soft_time_limit

    @property
    def reject_on_worker_lost(self) -> bool:
        if self._reject_on_worker_lost is None:
            default: bool = self.app.conf.task_reject_on_worker_lost
            return default
        return self._reject_on_worker_lost

    @property
    def rate_limit(self) -> Rate | None:
        """Starts per period on each worker (docs/rate-limits.md)."""
        if self._rate_limit is None:
            default: Rate | None = self.app.conf.task_default_rate_limit
            return default
        return self._rate_limit

    @property
    def request(self) -> Request | None:
        """The request of this task's current execution (in a bound task: ``self.request``)."""
        request = current_request()
        return request if request is not None and request.task == self.name else None

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> NoReturn:
        """End this run and have the task run again, with the same id and ``retries`` one higher.

        Due ``countdown`` seconds from now, at ``eta``, or else after ``default_retry_delay``;
        ``exc`` is the reason recorded with the RETRY state. ``max_retries`` overrides the
        task's for this call. Options ``args``, ``kwargs``, ``queue`` and ``priority`` change
        the next attempt. Raises :class:`~kq.exceptions.Retry`, which the worker turns into the
        RETRY state and the new message (sent after RETRY is stored, so a quick next attempt
        cannot be overwritten by it); once the retries are used up raises
        :class:`~kq.exceptions.MaxRetriesExceededError` instead (from ``exc``). ``raise
        self.retry(...)`` reads well and works the same.
        """
        request = self.request
        if request is None or request.message is None:
            raise KQError(f"{self.name}.retry() called outside a run of the task")
        unknown = options.keys() - {"args", "kwargs", "queue", "priority"}
        if unknown:
            raise TypeError(f"{self.name}.retry() got unknown option(s) {sorted(unknown)}")
        limit = self.retry_policy.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            raise MaxRetriesExceededError(
                f"{self.name}[{request.id}]: no retry left after {request.retries} (max_retries={limit})"
            ) from exc
        if countdown is None and eta is None:
            countdown = self.retry_policy.default_retry_delay
        changes: dict[str, Any] = {
            "retries": request.retries + 1,
            "eta": resolve_time(countdown if eta is None else eta, utcnow()),
        }
        if "args" in options:
            changes["args"] = tuple(options["args"])
        if "kwargs" in options:
            changes["kwargs"] = dict(options["kwargs"])
        if "priority" in options:
            changes["priority"] = options["priority"]
        message = attrs.evolve(request.message, **changes)
        raise Retry(message, exc, message.eta, queue=options.get("queue") or request.queue)

    def update_state(self, task_id: str | None = None, state: str | None = None, meta: Any = None) -> None:
        """Store ``state`` with ``meta`` for this run (or ``task_id``) now, for clients to read
        as ``AsyncResult.state`` and ``.info``: progress (``state="PROGRESS", meta={"current":
        3, "total": 10}``) or any custom state. The worker's final state replaces it."""
        if not state:
            raise TypeError(f"{self.name}.update_state() needs a state")
        request = self.request
        task_id = task_id or (request.id if request is not None else None)
        if task_id is None:
            raise KQError(f"{self.name}.update_state() outside a run of the task needs a task_id")
        if not self.app.conf.result_backend:
            return
        own = request if request is not None and request.id == task_id else None
        self.app.store_result(
            ResultMeta(
                task_id=task_id,
                state=state,
                result=meta,
                name=self.name,
                worker=own.hostname if own else None,
                retries=own.retries if own else 0,
                queue=own.queue if own else None,
            ),
            own.message.reply_to if own and own.message is not None else None,
        )

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task body in this thread (``self`` is passed first when ``bind=True``)."""
        if self.bind:
            return self.fun(self, *args, **kwargs)
        return self.fun(*args, **kwargs)

    __call__ = run

    def _check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        if self._signature is None:
            return
        if not kwargs and self._positional is not None:
            # The common call, positional arguments only, checked by count: Signature.bind
            # is a fifth of delay()'s own time. Anything else takes bind's exact check.
            least, most = self._positional
            if least <= len(args) <= most:
                return
        try:
            if self.bind:
                self._signature.bind(None, *args, **kwargs)
            else:
                self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{self._signature}: {exc}") from None

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Send the task to a worker with these arguments; shortcut for :meth:`apply_async`."""
        return self.apply_async(args, kwargs)

    async def delay_async(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
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
        ``task_id``, ``headers`` (extra message headers), ``serializer``, ``compression``,
        ``ignore_result``, ``time_limit`` and ``soft_time_limit`` (seconds, overriding the
        task's for this call),
        ``link`` and ``link_error`` (signatures to apply when it succeeds, or fails: see
        docs/canvas.md). ``chain``, ``chord``, ``group_id`` and ``group_index`` are set by the
        canvas. ``unique_key`` makes this call unique under that key (docs/tasks.md).
        """
        unique_key = options.pop("unique_key", None)
        unknown = set(options) - CALL_OPTIONS
        if unknown:
            raise TypeError(
                f"{self.name}.apply_async() got unknown option(s) {sorted(unknown)}; "
                f"accepted: {sorted(CALL_OPTIONS)}"
            )
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        self._check_arguments(args, kwargs)
        options.setdefault("serializer", self.serializer)
        options.setdefault("compression", self.compression)
        if options.get("ignore_result") is None:
            options["ignore_result"] = self.ignore_result
        if unique_key is not None or self.unique_for is not None:
            unique: AsyncResult = send_unique(
                self.app,
                self.name,
                unique_key or call_key(self.name, args, kwargs),
                self.unique_for or self.app.conf.task_unique_for,
                options,
                lambda opts: self.app.send_task(self.name, args, kwargs, **opts),
            )
            return unique
        sent: AsyncResult = self.app.send_task(self.name, args, kwargs, **options)
        return sent

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
    ) -> EagerResult:
        """Run the task here and now, as a worker would, and return its result without storing it.

        A retry (``self.retry()``, ``autoretry_for``) runs the next attempt at once, in this
        thread, without waiting for its countdown, until the task ends or its retries run out.
        """
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        self._check_arguments(args, kwargs)
        parent = current_request()
        task_id = task_id or str(uuid.uuid4())
        message = TaskMessage(
            id=task_id,
            task=self.name,
            args=args,
            kwargs=kwargs,
            parent_id=parent.id if parent else None,
            root_id=(parent.root_id or parent.id) if parent else task_id,
        )
        return run_eagerly(self, message)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's spelling
        result: AsyncResult = self.app.AsyncResult(task_id, task_name=self.name)
        return result

    # -- signatures (see kq.canvas) -------------------------------------------------------

    def signature(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
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


def _rate(task: str, option: str, value: str | float | None) -> Rate | None:
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise ValueError(f"task {task}: {option}: {exc}") from None


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


def _positional_bounds(signature: inspect.Signature | None, bound: bool) -> tuple[int, float] | None:
    """How many positional arguments a call without keywords may pass (least, most), or ``None``
    when a keyword-only parameter without a default makes every such call need :meth:`bind`."""
    if signature is None:
        return None
    least, most = 0, 0.0
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            most = float("inf")
        elif kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            if parameter.default is inspect.Parameter.empty:
                least += 1
            most += 1
        elif kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty:
            return None
    if bound:  # the task itself fills the first parameter
        least, most = max(least - 1, 0), most - 1
    return least, most


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
    for option, text in (("task_id", task_id), ("group_id", group_id)):
        if text is not None and not is_text(text):  # a workflow from a hostile message
            raise ValueError(f"{option} must be UTF-8 text, got {text!r:.100}")
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
