"""Celery's task message protocol, version 2, and its result-meta format.

kq speaks this format on every broker so that a kq client can feed a Celery worker and the
other way round. A task message is an :class:`Envelope` whose headers carry the task's identity
and options, and whose body is ``[args, kwargs, embed]`` serialized with the task serializer.
Results are stored as Celery's meta mapping (``status``, ``result``, ``traceback``, ...).

Everything received is untrusted: :func:`decode_task` validates every field it uses and raises
:class:`~kq.exceptions.MessageRejected` for anything it cannot use.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from .codec import nesting_depth
from .exceptions import MessageRejected, TaskError, TaskRevoked
from .serialization import Serializers
from .transport import Envelope

#: Headers that :class:`TaskMessage` models as fields; everything else is kept in ``extra_headers``.
KNOWN_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
    }
)
EMBED_KEYS = ("callbacks", "errbacks", "chain", "chord")
#: Characters of ``argsrepr``/``kwargsrepr`` (the ``message_max_repr`` setting's default).
REPR_LIMIT = 1024
#: Levels of nesting in a message's embed (the ``message_max_depth`` setting's default).
DEPTH_LIMIT = 64


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (kq never uses naive datetimes internally)."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as aware UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.frozen(kw_only=True)
class TaskMessage:
    """One request to run a task, independent of how it travels."""

    id: str
    task: str
    args: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    retries: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    #: ``(hard, soft)`` seconds, as Celery orders them.
    timelimit: tuple[float | None, float | None] = (None, None)
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    origin: str | None = None
    ignore_result: bool = False
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    chain: list[Any] | None = None
    chord: Any = None
    priority: int | None = None
    reply_to: str | None = None
    #: Headers kq does not model (custom ones from ``apply_async(headers=...)`` included).
    extra_headers: Mapping[str, Any] = attrs.field(factory=dict)

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or utcnow()) >= self.expires

    def seconds_until_eta(self, now: datetime | None = None) -> float:
        """Seconds until the task may run; zero or less means now."""
        if self.eta is None:
            return 0.0
        return (self.eta - (now or utcnow())).total_seconds()


def encode_task(
    message: TaskMessage, serializers: Serializers, serializer: str, repr_limit: int = REPR_LIMIT
) -> Envelope:
    """Turn a :class:`TaskMessage` into the envelope a transport publishes; ``argsrepr`` and
    ``kwargsrepr`` are cut to ``repr_limit`` characters, which workers enforce."""
    embed = {key: getattr(message, key) for key in EMBED_KEYS}
    body, spec = serializers.dumps([list(message.args), dict(message.kwargs), embed], serializer)
    hard, soft = message.timelimit
    headers: dict[str, Any] = dict(message.extra_headers)
    headers.update(
        lang="py",
        task=message.task,
        id=message.id,
        shadow=None,
        eta=message.eta.isoformat() if message.eta else None,
        expires=message.expires.isoformat() if message.expires else None,
        group=message.group,
        group_index=message.group_index,
        retries=message.retries,
        timelimit=[hard, soft],
        root_id=message.root_id or message.id,
        parent_id=message.parent_id,
        argsrepr=_shorten(
            message.argsrepr if message.argsrepr is not None else repr(message.args), repr_limit
        ),
        kwargsrepr=_shorten(
            message.kwargsrepr if message.kwargsrepr is not None else repr(dict(message.kwargs)), repr_limit
        ),
        origin=message.origin,
        ignore_result=message.ignore_result,
    )
    return Envelope(
        body=body,
        content_type=spec.content_type,
        content_encoding=spec.content_encoding,
        headers=headers,
        priority=message.priority,
        correlation_id=message.id,
        reply_to=message.reply_to,
    )


def is_text(value: Any) -> bool:
    """A string that can be stored: JSON may carry lone surrogates (``"\\ud800"``), which no
    UTF-8 broker or result backend can encode, so an id made of them could never be stored."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _optional_str(headers: Mapping[str, Any], key: str) -> str | None:
    value = headers.get(key)
    if value is None or is_text(value):
        return value
    raise MessageRejected("malformed", f"header {key!r} must be UTF-8 text, got {type(value).__name__}")


def parse_time(value: str) -> datetime:
    """An ISO 8601 time as aware UTC: the standard library's parser for the forms kq and Celery
    write (fast), dateutil's for anything else ISO 8601 allows. dateutil's parser is imported
    only then: it costs every kq process (each prefork child too) ~3 MB and ~50 modules."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        from dateutil.parser import isoparse

        parsed = isoparse(value)
    return as_utc(parsed)


def _optional_time(headers: Mapping[str, Any], key: str) -> datetime | None:
    value = headers.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageRejected("malformed", f"header {key!r} must be an ISO 8601 string")
    try:
        return parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise MessageRejected("malformed", f"header {key!r} is not ISO 8601: {exc}") from None


def _timelimit(value: Any) -> tuple[float | None, float | None]:
    if value is None:
        return (None, None)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise MessageRejected("malformed", "header 'timelimit' must be [hard, soft]")
    for item in value:
        if item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))):
            raise MessageRejected("malformed", "header 'timelimit' must hold numbers or null")
    return (value[0], value[1])


def _optional_int(headers: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = headers.get(key, default)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise MessageRejected("malformed", f"header {key!r} must be an integer")


def decode_task(
    envelope: Envelope,
    serializers: Serializers,
    accept: frozenset[str],
    max_depth: int = DEPTH_LIMIT,
) -> TaskMessage:
    """Validate and decode a received envelope; raise MessageRejected for anything unusable,
    a workflow part nested deeper than ``max_depth`` levels included."""
    headers = envelope.headers
    if not isinstance(headers, Mapping):
        raise MessageRejected("malformed", "message headers are not a mapping")
    task = headers.get("task")
    task_id = headers.get("id")
    if not task or not is_text(task) or not task_id or not is_text(task_id):
        raise MessageRejected(
            "malformed", "not a task message of protocol 2 (headers 'task' and 'id' missing)"
        )
    body = serializers.loads(envelope.body, envelope.content_type, accept)
    if not isinstance(body, (list, tuple)) or len(body) != 3:
        raise MessageRejected("malformed", f"task {task_id}: body must be [args, kwargs, embed]")
    args, kwargs, embed = body
    if not isinstance(args, (list, tuple)):
        raise MessageRejected("malformed", f"task {task_id}: args must be a list")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise MessageRejected("malformed", f"task {task_id}: kwargs must map strings to values")
    if embed is None:
        embed = {}
    if not isinstance(embed, Mapping):
        raise MessageRejected("malformed", f"task {task_id}: embed must be a mapping")
    if any(embed.values()) and nesting_depth(embed, max_depth) > max_depth:
        raise MessageRejected(
            "over-limit", f"task {task_id}: workflow nested deeper than message_max_depth ({max_depth})"
        )
    retries = _optional_int(headers, "retries", 0)
    return TaskMessage(
        id=task_id,
        task=task,
        args=tuple(args),
        kwargs=dict(kwargs),
        root_id=_optional_str(headers, "root_id"),
        parent_id=_optional_str(headers, "parent_id"),
        group=_optional_str(headers, "group"),
        group_index=_optional_int(headers, "group_index", None),
        retries=retries or 0,
        eta=_optional_time(headers, "eta"),
        expires=_optional_time(headers, "expires"),
        timelimit=_timelimit(headers.get("timelimit")),
        argsrepr=_optional_str(headers, "argsrepr"),
        kwargsrepr=_optional_str(headers, "kwargsrepr"),
        origin=_optional_str(headers, "origin"),
        ignore_result=bool(headers.get("ignore_result", False)),
        callbacks=embed.get("callbacks"),
        errbacks=embed.get("errbacks"),
        chain=embed.get("chain"),
        chord=embed.get("chord"),
        priority=envelope.priority,
        reply_to=envelope.reply_to,
        extra_headers={k: v for k, v in headers.items() if k not in KNOWN_HEADERS},
    )


# --- results -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ResultMeta:
    """A task's outcome in Celery's result-meta shape."""

    task_id: str
    state: str
    #: The return value, or for exception states the exception as :func:`exception_to_meta` gives.
    result: Any = None
    traceback: str | None = None
    date_done: datetime | None = None
    children: list[Any] = attrs.field(factory=list)
    name: str | None = None
    worker: str | None = None
    retries: int = 0
    queue: str | None = None


def encode_result(meta: ResultMeta, serializers: Serializers, serializer: str) -> bytes:
    data = {
        "status": meta.state,
        "result": meta.result,
        "traceback": meta.traceback,
        "children": meta.children,
        "date_done": meta.date_done.isoformat() if meta.date_done else None,
        "task_id": meta.task_id,
        "name": meta.name,
        "worker": meta.worker,
        "retries": meta.retries,
        "queue": meta.queue,
    }
    body, _ = serializers.dumps(data, serializer)
    return body


def decode_result(payload: bytes, serializers: Serializers, serializer: str) -> ResultMeta:
    """Decode a stored result; results are written by trusted workers, but still validated."""
    spec = serializers.get(serializer)
    data = spec.loads(payload)
    if not isinstance(data, Mapping) or "status" not in data or "task_id" not in data:
        raise MessageRejected("malformed", "stored result is not a result-meta mapping")
    date_done = data.get("date_done")
    return ResultMeta(
        task_id=data["task_id"],
        state=data["status"],
        result=data.get("result"),
        traceback=data.get("traceback"),
        date_done=parse_time(date_done) if isinstance(date_done, str) else None,
        children=list(data.get("children") or []),
        name=data.get("name"),
        worker=data.get("worker"),
        retries=data.get("retries") or 0,
        queue=data.get("queue"),
    )


#: kq exceptions stored under the name of their Celery counterpart, so that a Celery client
#: reading the result raises its own type (``AsyncResult.get()`` of an expired task raises
#: ``TaskRevokedError``); :func:`exception_from_meta` maps the names back.
CELERY_NAMES: Mapping[type[BaseException], tuple[str, str]] = {
    TaskRevoked: ("TaskRevokedError", "celery.exceptions"),
}
_FROM_CELERY = {name: cls for cls, name in CELERY_NAMES.items()}


def exception_to_meta(exc: BaseException) -> dict[str, Any]:
    """Describe an exception the way Celery stores it, using only serializable parts."""
    cls = type(exc)
    args = []
    for arg in exc.args:
        args.append(arg if isinstance(arg, (str, int, float, bool, type(None))) else repr(arg))
    exc_type, exc_module = CELERY_NAMES.get(cls, (cls.__qualname__, cls.__module__))
    return {"exc_type": exc_type, "exc_message": args, "exc_module": exc_module}


def exception_from_meta(data: Any) -> BaseException:
    """Rebuild a stored exception without importing anything.

    The original type is used when it is a builtin or its module is already imported (so the
    client can ``except`` it); otherwise :class:`~kq.exceptions.TaskError` stands in for it.
    """
    if not isinstance(data, Mapping):
        return TaskError("Exception", "builtins", repr(data))
    exc_type = str(data.get("exc_type", "Exception"))
    exc_module = str(data.get("exc_module", "builtins"))
    message = data.get("exc_message", [])
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    if (exc_type, exc_module) in _FROM_CELERY:
        return _FROM_CELERY[exc_type, exc_module](*args)
    owner: Any = builtins if exc_module == "builtins" else sys.modules.get(exc_module)
    cls: Any = owner
    for part in exc_type.split("."):
        cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(*args)
        except Exception:  # a custom __init__ with other arguments
            pass
    text = ", ".join(str(a) for a in args)
    return TaskError(exc_type, exc_module, text)
