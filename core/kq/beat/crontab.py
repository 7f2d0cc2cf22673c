"""``crontab``: runs at the minutes whose wall-clock time matches five cron fields, in a zone."""

from __future__ import annotations

import calendar
import copy
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from datetime import MAXYEAR, date, datetime, timezone, tzinfo
from typing import Any

from .schedule import Schedule
from .wallclock import as_zone, next_instant, zone_name

_DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
#: field: (lowest, highest, names). Day of week allows 7 as a second Sunday, as cron does.
_FIELDS: dict[str, tuple[int, int, dict[str, int]]] = {
    "minute": (0, 59, {}),
    "hour": (0, 23, {}),
    "day_of_week": (0, 7, _DAY_NAMES),
    "day_of_month": (1, 31, {}),
    "month_of_year": (1, 12, _MONTH_NAMES),
}
#: Every date recurs on every weekday within one 400-year Gregorian cycle.
_CYCLE_YEARS = 400


def _parse(field: str, value: Any) -> frozenset[int]:
    lo, hi, names = _FIELDS[field]
    allowed = f"allowed {lo}-{hi}" + (f" or names like {next(iter(names))!r}" if names else "")

    def number(text: str) -> int:
        text = text.strip().lower()
        if text in names:
            return names[text]
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"crontab {field}: {text!r} is not a number ({allowed})")
        return int(text)

    def checked(n: int) -> int:
        if not lo <= n <= hi:
            raise ValueError(f"crontab {field}: {n} is out of range ({allowed})")
        return n

    if isinstance(value, bool):
        raise ValueError(f"crontab {field}: expected a number, a cron string or numbers, got {value!r}")
    if isinstance(value, int):
        values = {checked(value)}
    elif isinstance(value, str):
        values = set()
        for part in value.split(","):
            body, _, step_text = part.partition("/")
            step = number(step_text) if step_text else 1
            if step < 1:
                raise ValueError(f"crontab {field}: step must be at least 1 in {part!r}")
            if body.strip() == "*":
                first, last = lo, hi
            else:
                start, dash, end = body.partition("-")
                first = checked(number(start))
                # "5/10" runs from 5 to the end, as in cron; "sat-sun" ends on Sunday as 7.
                last = checked(number(end)) if dash else hi if step_text else first
                if field == "day_of_week" and dash and last == 0 and first > 0:
                    last = 7
                if first > last:
                    raise ValueError(f"crontab {field}: range {part!r} runs backwards ({allowed})")
            values.update(range(first, last + 1, step))
    elif isinstance(value, Iterable):
        values = set()
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"crontab {field}: {item!r} is not a whole number ({allowed})")
            values.add(checked(item))
    else:
        raise ValueError(f"crontab {field}: expected a number, a cron string or numbers, got {value!r}")
    if not values:
        raise ValueError(f"crontab {field}: no values given ({allowed})")
    if field == "day_of_week" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def _render(values: frozenset[int], lo: int, hi: int) -> str:
    """The shortest usual cron spelling of ``values``: ``*``, ``*/15``, ``1-10/3``, ``1-5,9``."""
    ordered = sorted(values)
    if ordered == list(range(lo, hi + 1)):
        return "*"
    steps = {b - a for a, b in zip(ordered, ordered[1:], strict=False)}
    if len(ordered) > 2 and len(steps) == 1 and (step := steps.pop()) > 1:
        if ordered[0] == lo and ordered[-1] + step > hi:
            return f"*/{step}"
        return f"{ordered[0]}-{ordered[-1]}/{step}"
    runs: list[list[int]] = []
    for n in ordered:
        if runs and runs[-1][-1] == n - 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)) for run in runs)


class crontab(Schedule):  # noqa: N801 - the name everyone knows from cron and Celery
    """Runs at every minute whose wall-clock time in ``tz`` matches all five fields.

    Fields take a number, numbers, or a cron string (``"*"``, ``"*/15"``, ``"1-5"``,
    ``"1-10/2"``, ``"1,15,30"``, ``"mon-fri"``, ``"jan-mar"``); day of week 0 and 7 are Sunday.
    When both ``day_of_week`` and ``day_of_month`` are restricted a day must match *both* (as in
    Celery; classic cron runs when either matches): ``day_of_week="fri", day_of_month=13`` is
    Friday the 13th only.

    ``tz=None`` means the app's ``timezone`` setting (UTC outside an app). Across clock changes
    a wall time runs once: a skipped one as though the clocks had not changed yet (02:30 in a
    02:00->03:00 jump runs at 03:30 new time), a repeated one at its first occurrence; see
    :mod:`kq.beat.wallclock`.
    """

    def __init__(
        self,
        minute: Any = "*",
        hour: Any = "*",
        day_of_week: Any = "*",
        day_of_month: Any = "*",
        month_of_year: Any = "*",
        tz: str | tzinfo | None = None,
    ) -> None:
        self.minute = _parse("minute", minute)
        self.hour = _parse("hour", hour)
        self.day_of_week = _parse("day_of_week", day_of_week)
        self.day_of_month = _parse("day_of_month", day_of_month)
        self.month_of_year = _parse("month_of_year", month_of_year)
        self.tz = as_zone(tz, "crontab")
        if not any(
            day <= (29 if month == 2 else calendar.monthrange(2001, month)[1])
            for month in self.month_of_year
            for day in self.day_of_month
        ):
            raise ValueError(
                f"crontab never runs: no month in month_of_year has a day in day_of_month ({self._fields()})"
            )
        self._times = tuple((h, m) for h in sorted(self.hour) for m in sorted(self.minute))
        self._months = tuple(sorted(self.month_of_year))
        self._days = tuple(sorted(self.day_of_month))

    @property
    def zone(self) -> tzinfo:
        return self.tz or timezone.utc

    def with_default_timezone(self, tz: tzinfo) -> crontab:
        if self.tz is not None:
            return self
        clone = copy.copy(self)
        clone.tz = tz
        return clone

    def next_after(self, moment: datetime) -> datetime | None:
        return next_instant(self._walls_from, moment, self.zone)

    def _walls_from(self, start: datetime) -> Iterator[datetime]:
        """Matching wall times from ``start`` on (to the minute), walking months, then days, then
        the day's (hour, minute) pairs, so a sparse schedule costs a few steps, not a minute each."""
        first_day, first_time = start.date(), (start.hour, start.minute)
        for year in range(start.year, min(start.year + _CYCLE_YEARS, MAXYEAR) + 1):
            for month in self._months:
                if (year, month) < (start.year, start.month):
                    continue
                for day in self._matching_days(year, month):
                    if day < first_day:
                        continue
                    times = (
                        self._times[bisect_left(self._times, first_time) :]
                        if day == first_day
                        else self._times
                    )
                    for hour, minute in times:
                        yield datetime(year, month, day.day, hour, minute)

    def _matching_days(self, year: int, month: int) -> Iterator[date]:
        last = calendar.monthrange(year, month)[1]
        for day in self._days:
            if day > last:
                break
            when = date(year, month, day)
            if (when.weekday() + 1) % 7 in self.day_of_week:  # cron counts from Sunday
                yield when

    def _fields(self) -> str:
        """The five fields in cron's order, as cron would spell them."""
        return " ".join(
            _render(getattr(self, name), lo, 6 if name == "day_of_week" else hi)
            for name in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
            for lo, hi, _ in [_FIELDS[name]]
        )

    def describe(self) -> str:
        return f"crontab {self._fields()} {zone_name(self.zone)}"

    def _key(self) -> tuple[Any, ...]:
        tz = None if self.tz is None else zone_name(self.tz)
        return (self.minute, self.hour, self.day_of_week, self.day_of_month, self.month_of_year, tz)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, crontab) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
