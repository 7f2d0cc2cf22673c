"""Beat entries: what to publish on which schedule, read from ``beat_schedule`` and
``@app.periodic``, and the plan for one entry at one moment (which slots to publish, how far to
advance) under its missed-run policy.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from ..canvas.wire import CALL_OPTIONS
from ..exceptions import ConfigurationError, KQError
from .schedule import Schedule, every

#: What beat does with slots that came due while no beat was running (or leading):
#: ``once`` publishes one run for all of them (Celery's behaviour), ``all`` publishes each of
#: them (up to ``beat_max_catchup``), ``skip`` publishes none and waits for the next slot.
MISSED_POLICIES = ("once", "all", "skip")
#: Options beat sets itself (the task id), or that only a workflow's own steps carry.
_RESERVED_OPTIONS = {"task_id", "chain", "chord", "group_id", "group_index"}
_ENTRY_KEYS = {"task", "schedule", "args", "kwargs", "options", "missed"}
#: Deterministic task ids: one slot of one entry is always the same task id, so a duplicate
#: (were one ever published) is recognisable downstream.
_NAMESPACE = uuid.UUID("6b1f1f0e-6f5e-4b5e-9a0c-2f7d3c1a9b42")


@attrs.frozen
class Entry:
    """One periodic task. ``missed=None`` means the ``beat_missed`` setting."""

    name: str
    task: str
    schedule: Schedule
    args: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    options: Mapping[str, Any] = attrs.field(factory=dict)
    missed: str | None = None

    def task_id(self, slot: datetime) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{self.name}@{slot.isoformat()}"))


def build_schedule(value: Any, factory_for: Callable[[str], Callable[..., Any]]) -> Schedule:
    """A :class:`Schedule` from what a user may write in ``beat_schedule``: a schedule object,
    seconds or a timedelta (``every``), a five-field crontab string (``"*/5 * * * *"``), or a
    mapping ``{"type": "<schedule type>", **keywords}`` for configuration files and
    ``KQ_BEAT_SCHEDULE``. ``factory_for(name)`` looks a type up among the plugins."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return every(value)
    if isinstance(value, str):
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(
                f"a schedule string is a five-field crontab "
                f"('minute hour day_of_month month_of_year day_of_week'), got {value!r}"
            )
        keys = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        crontab: Schedule = factory_for("crontab")(**dict(zip(keys, fields, strict=True)))
        return crontab
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        keywords = {k: v for k, v in value.items() if k != "type"}
        schedule = factory_for(value["type"])(**keywords)
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule type {value['type']!r} built {schedule!r}, not a Schedule")
        return schedule
    raise ValueError(
        f"expected a schedule, seconds, a timedelta, a crontab string or {{'type': ..., ...}}, got {value!r}"
    )


def build_entry(name: str, spec: Any, factory_for: Callable[[str], Callable[..., Any]]) -> Entry:
    """An :class:`Entry` from one ``beat_schedule`` item; errors name the entry."""
    where = f"beat_schedule[{name!r}]"
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"{where} must be a mapping with 'task' and 'schedule', got {spec!r}")
    unknown = set(spec) - _ENTRY_KEYS
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key(s) {sorted(unknown)}; accepted: {sorted(_ENTRY_KEYS)}"
        )
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ConfigurationError(f"{where}: 'task' must be a task name, got {task!r}")
    if "schedule" not in spec:
        raise ConfigurationError(f"{where}: 'schedule' is missing")
    try:
        schedule = build_schedule(spec["schedule"], factory_for)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    except (TypeError, ValueError, LookupError, KQError) as exc:
        raise ConfigurationError(f"{where}: invalid schedule: {exc}") from None
    args, kwargs = spec.get("args", ()), spec.get("kwargs", {})
    if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise ConfigurationError(f"{where}: 'args' must be a list, got {args!r}")
    if not isinstance(kwargs, Mapping):
        raise ConfigurationError(f"{where}: 'kwargs' must be a mapping, got {kwargs!r}")
    options = spec.get("options", {})
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{where}: 'options' must be a mapping, got {options!r}")
    bad = set(options) - (CALL_OPTIONS - _RESERVED_OPTIONS)
    if bad:
        raise ConfigurationError(
            f"{where}: option(s) {sorted(bad)} cannot be set; accepted: "
            f"{sorted(CALL_OPTIONS - _RESERVED_OPTIONS)}"
        )
    missed = spec.get("missed")
    if missed is not None and missed not in MISSED_POLICIES:
        raise ConfigurationError(
            f"{where}: 'missed' must be one of {', '.join(MISSED_POLICIES)}, got {missed!r}"
        )
    return Entry(
        name=name,
        task=task,
        schedule=schedule,
        args=tuple(args),
        kwargs=dict(kwargs),
        options=dict(options),
        missed=missed,
    )


@attrs.frozen
class Plan:
    """What beat does for one entry now: publish ``publish`` (slots, oldest first) after
    recording ``advance_to`` as the entry's last slot. ``skipped`` counts the slots let go;
    ``truncated`` says the walk stopped at ``WALK_LIMIT`` and more were let go uncounted."""

    publish: tuple[datetime, ...]
    advance_to: datetime | None
    skipped: int = 0
    truncated: bool = False


NOTHING = Plan((), None)
#: The most due slots :func:`plan` walks through in one go.
WALK_LIMIT = 100_000


def plan(
    schedule: Schedule, last: datetime, now: datetime, policy: str, max_catchup: int, leading_since: datetime
) -> Plan:
    """Which slots after ``last`` and up to ``now`` to publish under ``policy``.

    A slot is *missed* when it came due before this beat started leading (``leading_since``):
    no beat was there to publish it, because none ran or the leader died. Those follow the
    policy (``all`` sends the newest ``max_catchup`` of them); slots that came due while this
    beat led are always published. The walk through due slots stops after ``WALK_LIMIT`` (a
    very long outage of a very frequent entry): the entry is then advanced to ``now`` and the
    plan is made from the slots seen, so a tick never runs for more than a moment.
    """
    recent: deque[datetime] = deque(maxlen=max_catchup)
    seen = 0
    slot = schedule.next_after(last)
    while slot is not None and slot <= now and seen < WALK_LIMIT:
        recent.append(slot)
        seen += 1
        slot = schedule.next_after(slot)
    if not seen:
        return NOTHING
    truncated = slot is not None and slot <= now
    advance_to = now if truncated else recent[-1]
    missed = [s for s in recent if s <= leading_since]
    on_time = list(recent)[len(missed) :]
    if policy == "all":
        chosen = list(recent)
    elif policy == "once":
        chosen = missed[-1:] + on_time
    else:
        chosen = on_time
    return Plan(tuple(chosen), advance_to, seen - len(chosen), truncated)
