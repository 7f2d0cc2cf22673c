"""Wall-clock times to instants: the one rule every wall-clock schedule (crontab, rrule) follows
when the clocks change.

A wall time that happens twice (the hour repeated when the clocks go back) runs once, at its
first occurrence. A wall time that does not happen (the hour skipped when the clocks go forward)
runs once, as though the clocks had not changed yet: 02:30 on a day whose clocks jump from 02:00
to 03:00 runs at 03:30 on the new clock. Both are what zoneinfo gives for ``fold=0`` (PEP 495),
so the rule is no more than that, kept in one place so every schedule agrees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .schedule import _aware

_DAY = timedelta(days=1)


def as_zone(tz: str | tzinfo | None, what: str) -> tzinfo | None:
    """``tz`` as a tzinfo: a zone name is looked up; ``None`` stays ``None`` (the app's zone)."""
    if tz is None or isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{what}: unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ) from None
    raise ValueError(f"{what}: tz must be a zone name or a tzinfo, got {tz!r}")


def zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def to_instant(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant of the naive wall time ``wall`` in ``tz``, under the rule above."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)


def _offset(instant: datetime, tz: tzinfo) -> timedelta:
    return instant.astimezone(tz).utcoffset() or timedelta(0)


def _wall(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def next_instant(
    walls_from: Callable[[datetime], Iterable[datetime]], moment: datetime, tz: tzinfo
) -> datetime | None:
    """The earliest instant strictly after ``moment`` of the wall times ``walls_from(start)``
    yields (naive, ascending, none before ``start``).

    Wall order is not instant order just after the clocks go forward: with a 02:00->03:00 jump,
    02:45 (run as 03:45) comes before 03:15 on the wall but after it in time. So the search
    starts early enough for a skipped wall time to still be due (the wall time of ``moment`` on
    the clock of a day before), and once a run is found it goes on until the wall clock of that
    run, keeping the earliest instant.
    """
    moment = _aware(moment, "moment")
    earlier = min(_offset(moment, tz), _offset(moment - _DAY, tz))
    start = (moment + earlier).replace(tzinfo=None)
    best: datetime | None = None
    for wall in walls_from(start):
        if best is not None and wall > _wall(best, tz):
            break
        instant = to_instant(wall, tz)
        if instant > moment and (best is None or instant < best):
            best = instant
    return best
