"""What a schedule is to beat: a rule that names the next run after a moment, and ``every``.

Beat keeps, per entry, the time of the last slot it published; everything else follows from
:meth:`Schedule.next_after`. A schedule therefore holds no state of its own, so several beat
processes (and a restarted one) agree on every slot without talking to each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def as_datetime(value: datetime | str, what: str) -> datetime:
    """A datetime, or one written as ISO 8601 text (how configuration files and
    ``KQ_BEAT_SCHEDULE`` give anchors and start dates)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO 8601 date and time") from None
    raise ValueError(f"{what} must be a datetime or ISO 8601 text, got {value!r}")


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value!r}")
    return value.astimezone(timezone.utc)


class Schedule(ABC):
    """A rule for when an entry runs. Schedule types from plugins subclass this."""

    @abstractmethod
    def next_after(self, moment: datetime) -> datetime | None:
        """The first run strictly after ``moment`` (aware), as an aware UTC datetime, or ``None``
        when the schedule has no more runs (an rrule with ``count``, say)."""

    def with_default_timezone(self, tz: tzinfo) -> Schedule:
        """This schedule with ``tz`` (the app's ``timezone`` setting) as the zone of any
        wall-clock fields that were given none. Beat calls it once per entry; a schedule that
        does not read wall clocks returns itself."""
        return self

    @abstractmethod
    def describe(self) -> str:
        """A short human description for ``kq beat --list``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class every(Schedule):  # noqa: N801 - reads as a function in a schedule table, like crontab
    """Runs every ``interval`` (seconds or a timedelta).

    Slots are counted from ``anchor`` (default 1970-01-01 UTC), not from when beat started:
    ``every(60)`` runs at each whole minute, ``every(30)`` at :00 and :30. Every beat process
    and every restart computes the same slots, which is what lets a second beat take over
    without running anything twice. Pass ``anchor=`` to shift the slots.
    """

    def __init__(self, interval: float | timedelta, *, anchor: datetime | str | None = None) -> None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"every() needs a positive number of seconds or a timedelta, got {interval!r}")
        self.seconds = float(seconds)
        self.anchor = (
            EPOCH if anchor is None else _aware(as_datetime(anchor, "every(anchor=)"), "every(anchor=)")
        )
        self._step = timedelta(seconds=self.seconds)

    def next_after(self, moment: datetime) -> datetime:
        moment = _aware(moment, "moment")
        elapsed = (moment - self.anchor) / self._step  # a float count of intervals
        slot = self.anchor + (int(elapsed // 1) + 1) * self._step
        while slot <= moment:  # float rounding at a slot boundary
            slot += self._step
        return slot

    def describe(self) -> str:
        seconds = self.seconds
        for unit, size in (("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"every {seconds / size:g}{unit}"
        return f"every {seconds:g}s"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, every) and (self.seconds, self.anchor) == (other.seconds, other.anchor)

    def __hash__(self) -> int:
        return hash((self.seconds, self.anchor))
