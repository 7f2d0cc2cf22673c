"""Settings: one attrs class, filled from layers in a fixed order.

defaults < ``App(...)`` arguments and ``app.config_from_object(...)`` < ``KQ_*`` environment
variables < command-line flags. Every value is validated when the settings are built, and an
invalid one fails with the setting's name and what it accepts, before anything connects.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .exceptions import ConfigurationError
from .ratelimit import Rate, parse_rate
from .redact import safe_setting
from .redact import safe_url as safe_url  # where plugins have always imported it from
from .routing import Router

ENV_PREFIX = "KQ_"
DEFAULT_URL = "sqlite:///kq.sqlite3"


def _positive_int(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigurationError(f"{attr.name} must be a whole number >= 1, got {value!r}")


def _non_negative_int(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{attr.name} must be a whole number >= 0, got {value!r}")


def _positive_number(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ConfigurationError(f"{attr.name} must be a number > 0 (or None), got {value!r}")


def _port(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535
    ):
        raise ConfigurationError(f"{attr.name} must be a port number 1-65535 (or None), got {value!r}")


def _url(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attr.name in ("result_backend", "beat_store"):
        return
    if not isinstance(value, str) or "://" not in value:
        # Not a URL, so safe_url cannot find the password: hide anything between ':' and '@'.
        shown = repr(re.sub(r":[^:@/]*@", ":**@", value)) if isinstance(value, str) else repr(value)
        raise ConfigurationError(f"{attr.name} must be a URL like 'scheme://...', got {shown}")


def _name(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{attr.name} must be a non-empty string, got {value!r}")


def _optional_name(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _name(inst, attr, value)


def _bool(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{attr.name} must be true or false, got {value!r}")


def _mapping(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{attr.name} must be a mapping, got {value!r}")


def _names(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigurationError(f"{attr.name} must be a non-empty list of names, got {value!r}")


def _autoscale(value: Any) -> tuple[int, int] | None:
    """``"10,3"``, ``(10, 3)`` or ``None``; max >= min >= 1 (``"10"`` means ``10,1``)."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [int(p) for p in parts]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) == 1:
        numbers.append(1)
    if len(numbers) != 2 or not numbers[0] >= numbers[1] >= 1:
        raise ConfigurationError(f"worker_autoscale must be 'MAX,MIN' with MAX >= MIN >= 1, got {value!r}")
    return (numbers[0], numbers[1])


def _routes(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    Router(value)  # compiles it, raising ConfigurationError("task_routes: ...") when invalid


def _rate_limit(value: Any) -> Rate | None:
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise ConfigurationError(f"task_default_rate_limit: {exc}") from None


def _timezone(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, TypeError, ValueError):
        raise ConfigurationError(
            f"timezone must be an IANA time zone name such as 'UTC' or 'Europe/Berlin', got {value!r}"
        ) from None


def _one_of(*choices: str) -> Any:
    def check(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ConfigurationError(f"{attr.name} must be one of {', '.join(choices)}, got {value!r}")

    return check


def _tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


@attrs.frozen(kw_only=True, repr=False)
class Settings:
    """Every setting kq's kernel reads. Plugins read their own options from the ``*_options``."""

    #: Where tasks are sent and consumed. The scheme picks the transport plugin.
    broker_url: str = attrs.field(default=DEFAULT_URL, validator=_url)
    #: Transport-specific options (``visibility_timeout``, ...), passed to the transport factory.
    broker_transport_options: Mapping[str, Any] = attrs.field(factory=dict, validator=_mapping)
    #: Where results are stored; ``None`` disables results.
    result_backend: str | None = attrs.field(default=DEFAULT_URL, validator=_url)
    #: Backend-specific options, passed to the backend factory.
    result_backend_options: Mapping[str, Any] = attrs.field(factory=dict, validator=_mapping)
    #: Seconds a result is kept; ``None`` keeps results until forgotten.
    result_expires: float | None = attrs.field(default=86400.0, validator=_positive_number)
    #: Seconds a worker keeps retrying to store a result while the backend is unreachable.
    #: After that an acks_late task goes back to its queue (it will run again) and an early-acked
    #: task's result is lost, with an error in the log.
    result_store_timeout: float = attrs.field(default=30.0, validator=_positive_number)
    #: The serializer task messages are sent with (``json``, ``pickle``, or a plugin's such as
    #: ``msgpack``); a task or a call may choose another. Workers must accept it.
    task_serializer: str = attrs.field(default="json", validator=_name)
    #: The serializer workers store results with; clients read results with the same one.
    result_serializer: str = attrs.field(default="json", validator=_name)
    #: Content types (or serializer names) a worker agrees to decode. Anything else is rejected
    #: before it is parsed. pickle is accepted only when listed here.
    accept_content: tuple[str, ...] = attrs.field(default=("json",), converter=_tuple, validator=_names)
    #: Compress task bodies with this format (``zlib``, ``bz2``, ``lzma``, or a plugin's such as
    #: ``zstd``); per task or call: ``compression=``. ``None`` sends them as they are.
    task_compression: str | None = attrs.field(default=None, validator=_optional_name)
    #: Largest message body, in bytes, that a client sends or a worker accepts (also after
    #: inflating a compressed one). Larger messages are refused (dead-lettered by workers).
    message_max_size: int = attrs.field(default=4 * 1024 * 1024, validator=_positive_int)
    #: Longest ``argsrepr``/``kwargsrepr`` header, in characters: clients shorten theirs to it,
    #: workers refuse messages over it.
    message_max_repr: int = attrs.field(default=1024, validator=_positive_int)
    #: Deepest nesting of lists and mappings a worker accepts in a message's workflow part
    #: (callbacks, errbacks, chain, chord).
    message_max_depth: int = attrs.field(default=64, validator=_positive_int)
    #: Sign every message sent and verify every message received with this signer (``x509``
    #: from kq-auth); ``None`` signs nothing. See docs/security.md.
    message_signer: str | None = attrs.field(default=None, validator=_optional_name)
    #: The signer's options (key and certificate paths, trusted store, ...).
    message_signer_options: Mapping[str, Any] = attrs.field(factory=dict, validator=_mapping)
    #: The queue a task goes to when neither the call nor the task names one. "celery" so that
    #: kq and Celery clients and workers meet on the same queue without configuration.
    task_default_queue: str = attrs.field(default="celery", validator=_name)
    #: Which queue (and priority) tasks go to, by name, glob or function; see docs/routing.md.
    task_routes: Any = attrs.field(factory=dict, validator=_routes)
    #: How often a client retries a publish when the broker connection fails (with backoff
    #: from 0.2 s doubling to 2 s); 0 fails at once.
    task_publish_retries: int = attrs.field(default=5, validator=_non_negative_int)
    #: Ack after the task ends instead of as it starts: a crash mid-task redelivers it.
    task_acks_late: bool = attrs.field(default=False, validator=_bool)
    #: Do not store results (per task: ``@app.task(ignore_result=True)``).
    task_ignore_result: bool = attrs.field(default=False, validator=_bool)
    #: Seconds after which a task is stopped and fails with TimeLimitExceeded (pools with
    #: ``hard_time_limit``, such as prefork); ``None`` for no limit. Tasks may set their own.
    task_time_limit: float | None = attrs.field(default=None, validator=_positive_number)
    #: Seconds after which SoftTimeLimitExceeded is raised inside the task so it can clean up
    #: (pools with ``soft_time_limit``); ``None`` for no limit.
    task_soft_time_limit: float | None = attrs.field(default=None, validator=_positive_number)
    #: With ``acks_late``: when the process running a task dies, put the task back on its queue
    #: instead of failing it. Only for idempotent tasks: a task that kills its process loops.
    task_reject_on_worker_lost: bool = attrs.field(default=False, validator=_bool)
    #: Also store STARTED when a task begins (one more backend write per task).
    task_track_started: bool = attrs.field(default=False, validator=_bool)
    #: Clients broadcast a ``task-sent`` event for each task they send (see docs/monitoring.md).
    task_send_sent_event: bool = attrs.field(default=False, validator=_bool)
    #: Starts per period on each worker (``"100/m"``, ``"10/s"``, a number per second) for tasks
    #: that set no ``rate_limit``; ``None`` for no limit. See docs/rate-limits.md.
    task_default_rate_limit: Rate | None = attrs.field(default=None, converter=_rate_limit)
    #: Seconds a unique task's key stays claimed at most, for tasks that set no ``unique_for``
    #: (calls with ``unique_key=...``); the key is freed earlier when the task ends.
    task_unique_for: float = attrs.field(default=3600.0, validator=_positive_number)
    #: The pool ``kq worker`` uses when ``--pool`` is not given.
    worker_pool: str = attrs.field(default="threads", validator=_name)
    #: Tasks run at once; ``None`` means the pool's own default (``PoolSpec.default_concurrency``).
    worker_concurrency: int | None = attrs.field(default=None, validator=_positive_int)
    #: Messages reserved per pool slot beyond the running ones (0: reserve none).
    worker_prefetch_multiplier: int = attrs.field(default=4, validator=_non_negative_int)
    #: Replace a pool child after it ran this many tasks (pools with ``max_tasks_per_child``).
    worker_max_tasks_per_child: int | None = attrs.field(default=None, validator=_positive_int)
    #: Replace a pool child after a task leaves it above this resident memory, in KiB.
    worker_max_memory_per_child: int | None = attrs.field(default=None, validator=_positive_int)
    #: ``(max, min)`` pool size for autoscaling pools: grow while messages wait, shrink when idle.
    worker_autoscale: tuple[int, int] | None = attrs.field(default=None, converter=_autoscale)
    #: On warm shutdown, seconds to wait for running tasks before abandoning them (acks_late
    #: ones go back to their queue); ``None`` waits as long as they run.
    worker_soft_shutdown_timeout: float | None = attrs.field(default=None, validator=_positive_number)
    #: ``kq worker`` exits (code 70, the loop's stack logged) when its consumer loop has not
    #: stepped for this many seconds, so a supervisor restarts it; ``None`` never. A healthy
    #: loop steps every second or so, and its slowest legitimate wait (a broker or backend
    #: timing out) is well under the default. See docs/reliability.md.
    worker_watchdog_timeout: float | None = attrs.field(default=300.0, validator=_positive_number)
    #: Pool-specific options, passed to the pool factory.
    worker_pool_options: Mapping[str, Any] = attrs.field(factory=dict, validator=_mapping)
    #: Seconds a revoke is remembered (workers skip the task until then); see docs/tasks.md.
    worker_revoked_expires: float = attrs.field(default=10800.0, validator=_positive_number)
    #: Port of the worker's ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` server;
    #: ``None`` serves none. See docs/monitoring.md.
    worker_metrics_port: int | None = attrs.field(default=None, validator=_port)
    #: Address that server listens on; ``0.0.0.0`` to let Prometheus or Kubernetes reach it.
    worker_metrics_host: str = attrs.field(default="127.0.0.1", validator=_name)
    #: Broadcast task and worker events (``kq worker -E``) for ``kq events`` and other
    #: monitors; see docs/monitoring.md.
    worker_send_task_events: bool = attrs.field(default=False, validator=_bool)
    #: The zone of wall-clock schedules (crontab, solar days, rrule) that name none.
    timezone: str = attrs.field(default="UTC", validator=_timezone)
    #: Periodic tasks: ``{name: {"task": ..., "schedule": ..., "args": [...], "kwargs": {...},
    #: "options": {...}, "missed": "once"|"all"|"skip"}}``; see docs/beat.md.
    beat_schedule: Mapping[str, Any] = attrs.field(factory=dict, validator=_mapping)
    #: Where beat keeps last runs and its leader lock; ``None``: the broker's store if a plugin
    #: has one for its scheme (Redis, SQLite), else ``sqlite:///kq.sqlite3``.
    beat_store: str | None = attrs.field(default=None, validator=_url)
    #: Store-specific options, passed to the store factory.
    beat_store_options: Mapping[str, Any] = attrs.field(factory=dict, validator=_mapping)
    #: Seconds the leader lock lasts without renewal: how soon another beat takes over from a
    #: dead leader. The leader renews it every third of that.
    beat_lease: float = attrs.field(default=10.0, validator=_positive_number)
    #: What to do with runs missed while no beat was running: once, all, or skip.
    beat_missed: str = attrs.field(default="once", validator=_one_of("once", "all", "skip"))
    #: With ``missed="all"``: most runs of one entry sent to catch up; older ones are let go.
    beat_max_catchup: int = attrs.field(default=100, validator=_positive_int)

    def __repr__(self) -> str:
        """With passwords and secret options masked: settings end up in logs and bug reports."""
        shown = (
            f"{a.name}={safe_setting(a.name, getattr(self, a.name))!r}" for a in attrs.fields(type(self))
        )
        return f"Settings({', '.join(shown)})"

    @classmethod
    def names(cls) -> list[str]:
        return [a.name for a in attrs.fields(cls)]

    @classmethod
    def build(cls, *layers: Mapping[str, Any]) -> Settings:
        """Merge ``layers`` (later wins) over the defaults and validate the result."""
        merged: dict[str, Any] = {}
        for layer in layers:
            for key, value in layer.items():
                check_name(key)
                merged[key] = value
        return cls(**merged)

    def replace(self, **changes: Any) -> Settings:
        for key in changes:
            check_name(key)
        return attrs.evolve(self, **changes)


def reject_unknown_options(what: str, options: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Fail on option names a plugin does not know (``what`` names the plugin's options), so a
    misspelt option cannot silently leave its default in place."""
    known = sorted(accepted)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigurationError(f"unknown {what} {', '.join(unknown)}; accepted: {', '.join(known)}")


def check_name(key: str) -> None:
    if key not in _FIELDS:
        close = difflib.get_close_matches(key, _FIELDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"unknown setting {key!r}{hint}")


_FIELDS = {a.name: a for a in attrs.fields(Settings)}
#: Settings whose default is None, with the type an environment value converts to.
_NUMERIC_OPTIONAL: dict[str, Any] = {
    "worker_concurrency": int,
    "worker_max_tasks_per_child": int,
    "worker_max_memory_per_child": int,
    "task_time_limit": float,
    "task_soft_time_limit": float,
    "worker_soft_shutdown_timeout": float,
    "worker_autoscale": str,
    "worker_metrics_port": int,
}


def _parse_env(name: str, raw: str) -> Any:
    """Convert an environment string to the setting's type, judged from its default."""
    field = _FIELDS[name]
    # attrs' stubs declare Factory a function (so `x: list[int] = Factory(list)` checks): a class.
    initial: Any = field.default
    default = initial.factory() if isinstance(initial, attrs.Factory) else initial  # type: ignore[arg-type]
    nullable = field.default is None or name in (
        "result_backend",
        "result_expires",
        "worker_watchdog_timeout",
    )
    if nullable and raw.strip().lower() in ("none", "null"):
        return None
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if name == "task_routes" and raw.strip()[:1] not in ("{", "["):
            return raw.strip()  # the import path of a route mapping or function
        if isinstance(default, Mapping):
            return json.loads(raw)
        if isinstance(default, tuple):
            return _tuple(raw)
        if isinstance(default, float):
            return float(raw)
        if name in _NUMERIC_OPTIONAL:
            return _NUMERIC_OPTIONAL[name](raw)
        if isinstance(default, int):
            return int(raw)
    except ValueError as exc:
        # A JSON mapping may hold passwords: then name the variable and the error, not its text.
        shown = "" if isinstance(default, Mapping) else f"={safe_setting(name, raw)!r}"
        raise ConfigurationError(f"{ENV_PREFIX}{name.upper()}{shown}: {exc}") from None
    return raw


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings named by ``KQ_<SETTING>`` variables; unknown ``KQ_`` names are not errors,
    since plugins and the CLI use the prefix too."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in _FIELDS:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            found[name] = _parse_env(name, raw)
    return found


def from_object(obj: Any) -> dict[str, Any]:
    """The settings in a mapping, an object, or a module given by its dotted name.

    From objects and modules only public lowercase attributes are read, so a config module may
    keep helpers in ``_private`` names; an unknown public name is an error, which catches typos.
    """
    if isinstance(obj, str):
        obj = importlib.import_module(obj)
    if isinstance(obj, Mapping):
        items = dict(obj)
    else:
        items = {
            k: getattr(obj, k)
            for k in dir(obj)
            if not k.startswith("_")
            and k.islower()
            and (k in _FIELDS or not callable(getattr(obj, k)))  # a route function is a setting
            and not isinstance(getattr(obj, k), type(importlib))
        }
    for key in items:
        check_name(key)
    return items
