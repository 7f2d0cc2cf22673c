"""``rrule``: runs at the occurrences of an iCalendar (RFC 5545) recurrence rule, in a zone.

The occurrences themselves come from python-dateutil; this module places them on a zone's wall
clock, with the same rule as crontab for times the clocks skip or repeat
(:mod:`kq.beat.wallclock`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Literal, cast

from dateutil import rrule as du

from .schedule import Schedule, as_datetime
from .wallclock import as_zone, next_instant, zone_name

FREQUENCIES: dict[str, Literal[0, 1, 2, 3, 4, 5, 6]] = {
    "yearly": du.YEARLY,
    "monthly": du.MONTHLY,
    "weekly": du.WEEKLY,
    "daily": du.DAILY,
    "hourly": du.HOURLY,
    "minutely": du.MINUTELY,
    "secondly": du.SECONDLY,
}
_WEEKDAYS = {day: getattr(du, day) for day in ("MO", "TU", "WE", "TH", "FR", "SA", "SU")}
#: Frequencies whose periods have one length on the wall clock, so a rule without ``count`` can
#: restart at a later period boundary without changing its occurrences (see ``_from``).
_PERIODS = {
    du.WEEKLY: timedelta(weeks=1),
    du.DAILY: timedelta(days=1),
    du.HOURLY: timedelta(hours=1),
    du.MINUTELY: timedelta(minutes=1),
    du.SECONDLY: timedelta(seconds=1),
}
_DEFAULT_START = datetime(2000, 1, 1)


def _weekday(value: Any) -> Any:
    return _WEEKDAYS.get(value.upper(), value) if isinstance(value, str) else value


class rrule(Schedule):  # noqa: N801 - dateutil's and RFC 5545's name for it
    """Runs at each occurrence of a recurrence rule, as wall-clock times in ``tz``.

    Give the rule as RFC 5545 text, ``rrule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9")``, or as keywords,
    ``rrule(freq="daily", interval=2, byhour=9)`` (dateutil's ``rrule`` keywords; ``freq`` by
    name, weekdays may be ``"MO"``...). ``dtstart`` anchors intervals and counts: a naive one is
    a wall time in ``tz``, an aware one is converted to it; the default is 2000-01-01 00:00.
    ``tz=None`` means the app's ``timezone`` setting (UTC outside an app). After the last
    occurrence (``count``, ``until``) :meth:`next_after` returns ``None``.
    """

    def __init__(
        self,
        rule: str | None = None,
        *,
        freq: str | None = None,
        dtstart: datetime | str | None = None,
        tz: str | tzinfo | None = None,
        **fields: Any,
    ) -> None:
        if (rule is None) == (freq is None):
            raise ValueError("rrule: give either the rule text or freq= (with keywords), not both")
        if rule is not None and fields:
            raise ValueError(f"rrule: keywords {sorted(fields)} go with freq=, not with rule text")
        self.rule, self.freq, self.fields = rule, freq, fields
        self.dtstart = None if dtstart is None else as_datetime(dtstart, "rrule(dtstart=)")
        if isinstance(fields.get("until"), str):
            fields["until"] = as_datetime(fields["until"], "rrule(until=)")
        self.tz = as_zone(tz, "rrule")
        self._rule = self._build(self.zone)

    @property
    def zone(self) -> tzinfo:
        return self.tz or timezone.utc

    def _build(self, zone: tzinfo) -> du.rrule:
        start = _DEFAULT_START if self.dtstart is None else self.dtstart
        if start.tzinfo is not None:
            start = start.astimezone(zone).replace(tzinfo=None)
        if self.rule is not None:
            text = self.rule.strip()
            text = text[len("RRULE:") :] if text.upper().startswith("RRULE:") else text
            if "DTSTART" in text.upper() or "\n" in text:
                raise ValueError(f"rrule: give one RRULE without DTSTART (pass dtstart=), got {self.rule!r}")
            try:
                # One RRULE line without DTSTART (checked above) parses to an rrule, not a set.
                return cast(du.rrule, du.rrulestr(text, dtstart=start))
            except (ValueError, LookupError) as exc:
                raise ValueError(f"rrule: invalid rule {self.rule!r}: {exc}") from None
        if not isinstance(self.freq, str) or self.freq.lower() not in FREQUENCIES:
            raise ValueError(f"rrule: freq must be one of {', '.join(FREQUENCIES)}, got {self.freq!r}")
        fields = dict(self.fields)
        if "byweekday" in fields:
            days = fields["byweekday"]
            is_one = isinstance(days, (str, int)) or not hasattr(days, "__iter__")
            fields["byweekday"] = _weekday(days) if is_one else [_weekday(d) for d in days]
        until = fields.get("until")
        if isinstance(until, datetime) and until.tzinfo is not None:
            fields["until"] = until.astimezone(zone).replace(tzinfo=None)
        try:
            return du.rrule(FREQUENCIES[self.freq.lower()], dtstart=start, **fields)
        except TypeError as exc:
            raise ValueError(f"rrule: {exc}") from None

    def with_default_timezone(self, tz: tzinfo) -> rrule:
        if self.tz is not None:
            return self
        clone = copy.copy(self)
        clone.tz = tz
        clone._rule = clone._build(tz)
        return clone

    def next_after(self, moment: datetime) -> datetime | None:
        return next_instant(self._walls_from, moment, self.zone)

    def _walls_from(self, start: datetime) -> Iterator[datetime]:
        return self._from(start).xafter(start, inc=True)

    def _from(self, start: datetime) -> du.rrule:
        """The rule restarted at the last whole period well before ``start``: dateutil walks
        every period from ``dtstart``, which for an hourly rule since 2000 is 200,000 steps a
        call. Only rules without ``count`` (which counts from ``dtstart``) and with fixed-length
        periods restart; the defaults taken from ``dtstart`` (time, weekday) stay the same."""
        rule = self._rule
        # The rule's fields are private attributes, which types-python-dateutil does not declare.
        fields: Any = rule
        period = _PERIODS.get(fields._freq)
        if period is None or fields._count is not None:
            return rule
        step = period * fields._interval
        periods = (start - fields._dtstart) // step - 1
        if periods <= 0:
            return rule
        return rule.replace(dtstart=fields._dtstart + periods * step)

    def describe(self) -> str:
        text = self.rule if self.rule is not None else str(self._rule).split("\n")[-1][len("RRULE:") :]
        return f"rrule {text.strip()} {zone_name(self.zone)}"

    def _key(self) -> tuple[Any, ...]:
        return (str(self._rule), None if self.tz is None else zone_name(self.tz))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, rrule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
