"""``solar``: runs at a sun event (sunrise, sunset, noon, twilight) at a place on Earth.

The sun's position comes from NOAA's solar calculator equations (after Jean Meeus,
*Astronomical Algorithms*), good to about a minute away from the poles; no time zone is involved,
since an event is an instant.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from math import acos, asin, cos, degrees, radians, sin, tan
from typing import Any

from .schedule import Schedule, _aware

#: Event: (zenith of the sun's centre in degrees, -1 before noon / +1 after / 0 at noon).
#: 90.833 is the horizon plus refraction (34') and half the sun's disc (16').
EVENTS: dict[str, tuple[float, int]] = {
    "sunrise": (90.833, -1),
    "sunset": (90.833, 1),
    "solar_noon": (90.0, 0),
    "dawn_civil": (96.0, -1),
    "dusk_civil": (96.0, 1),
    "dawn_nautical": (102.0, -1),
    "dusk_nautical": (102.0, 1),
    "dawn_astronomical": (108.0, -1),
    "dusk_astronomical": (108.0, 1),
}
#: A year and a bit: an event that has not happened in that long (polar day or night) is never.
_SEARCH_DAYS = 370
_J2000 = 2451545.0
_UNIX_EPOCH_JD = 2440587.5


def _sun(moment: datetime) -> tuple[float, float]:
    """The sun's declination (degrees) and the equation of time (minutes) at ``moment``."""
    t = (moment.timestamp() / 86400 + _UNIX_EPOCH_JD - _J2000) / 36525  # Julian centuries
    mean_long = (280.46646 + t * (36000.76983 + t * 0.0003032)) % 360
    anomaly = radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    center = (
        sin(anomaly) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + sin(2 * anomaly) * (0.019993 - 0.000101 * t)
        + sin(3 * anomaly) * 0.000289
    )
    omega = radians(125.04 - 1934.136 * t)
    apparent_long = radians(mean_long + center - 0.00569 - 0.00478 * sin(omega))
    mean_obliquity = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    obliquity = radians(mean_obliquity + 0.00256 * cos(omega))
    declination = degrees(asin(sin(obliquity) * sin(apparent_long)))
    y = tan(obliquity / 2) ** 2
    l0 = radians(mean_long)
    eq_time = 4 * degrees(
        y * sin(2 * l0)
        - 2 * eccentricity * sin(anomaly)
        + 4 * eccentricity * y * sin(anomaly) * cos(2 * l0)
        - 0.5 * y * y * sin(4 * l0)
        - 1.25 * eccentricity**2 * sin(2 * anomaly)
    )
    return declination, eq_time


def event_time(day: datetime, event: str, lat: float, lon: float) -> datetime | None:
    """``event`` of the solar day near UTC midnight ``day`` at ``lat``/``lon``, or ``None``
    when the sun does not reach the event's zenith that day.

    The sun is placed first at the day's approximate noon, then again at the time that gives,
    which moves the result by up to a minute or so.
    """
    zenith, side = EVENTS[event]
    estimate = day + timedelta(minutes=720 - 4 * lon)
    for _ in range(2):
        declination, eq_time = _sun(estimate)
        minutes = 720 - 4 * lon - eq_time
        if side:
            phi, delta = radians(lat), radians(declination)
            cos_hour = cos(radians(zenith)) / (cos(phi) * cos(delta)) - tan(phi) * tan(delta)
            if not -1 <= cos_hour <= 1:
                return None
            minutes += side * 4 * degrees(acos(cos_hour))
        estimate = day + timedelta(minutes=minutes)
    return estimate


class solar(Schedule):  # noqa: N801 - reads like crontab in a schedule table
    """Runs at ``event`` (one of :data:`EVENTS`) at latitude ``lat``, longitude ``lon`` (degrees,
    north and east positive). Days without the event - polar day or night - are skipped."""

    def __init__(self, event: str, lat: float, lon: float) -> None:
        if event not in EVENTS:
            raise ValueError(f"solar: unknown event {event!r}; valid events: {', '.join(EVENTS)}")
        for name, value, limit in (("lat", lat, 90), ("lon", lon, 180)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -limit <= value <= limit:
                raise ValueError(f"solar: {name} must be a number in [-{limit}, {limit}], got {value!r}")
        self.event, self.lat, self.lon = event, float(lat), float(lon)

    def next_after(self, moment: datetime) -> datetime | None:
        moment = _aware(moment, "moment")
        # A solar day's events can fall on the UTC day before or after, so start two days back.
        day = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc) - timedelta(days=2)
        for offset in range(_SEARCH_DAYS):
            when = event_time(day + timedelta(days=offset), self.event, self.lat, self.lon)
            if when is not None and when > moment:
                return when
        return None

    def describe(self) -> str:
        return f"solar {self.event} at {self.lat:g}, {self.lon:g}"

    def _key(self) -> tuple[Any, ...]:
        return (self.event, self.lat, self.lon)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, solar) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
