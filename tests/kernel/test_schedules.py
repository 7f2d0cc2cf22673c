"""Beat's wall-clock and solar schedules: crontab parsing and next runs (month ends, leap days,
clock changes), solar events against the independent ``astral`` package, rrule, and the
schedule types the built-in plugin registers."""

from __future__ import annotations

import calendar
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from astral import Observer
from astral import sun as astral_sun
from dateutil import rrule as du

import kq
from kq.beat import Schedule, build_schedule, crontab, every, load_entries, rrule, solar
from kq.plugins import get_plugins

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def runs(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every run after ``start`` up to ``end``, by feeding each run back as the next moment."""
    found: list[datetime] = []
    moment = start
    while (moment := schedule.next_after(moment)) is not None and moment <= end:
        found.append(moment)
    return found


def first(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    found: list[datetime] = []
    moment = start
    for _ in range(n):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- crontab: parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("minute", "*/15", {0, 15, 30, 45}),
        ("minute", "1-10/2", {1, 3, 5, 7, 9}),
        ("minute", "1,15,30", {1, 15, 30}),
        ("minute", "5/20", {5, 25, 45}),
        ("minute", [0, 30], {0, 30}),
        ("hour", 7, {7}),
        ("hour", "1-5", {1, 2, 3, 4, 5}),
        ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}),
        ("day_of_week", "SUN", {0}),
        ("day_of_week", 7, {0}),
        ("day_of_week", "5-7", {5, 6, 0}),
        ("day_of_week", "sat-sun", {6, 0}),
        ("day_of_month", "*", set(range(1, 32))),
        ("month_of_year", "jan-mar,dec", {1, 2, 3, 12}),
    ],
)
def test_crontab_parses_fields(field: str, value: object, expected: set[int]) -> None:
    assert getattr(crontab(**{field: value}), field) == expected


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ({"minute": 60}, ["minute", "0-59"]),
        ({"hour": "24"}, ["hour", "0-23"]),
        ({"hour": "1-24"}, ["hour", "0-23"]),
        ({"day_of_month": 0}, ["day_of_month", "1-31"]),
        ({"month_of_year": "13"}, ["month_of_year", "1-12"]),
        ({"month_of_year": "smarch"}, ["month_of_year", "1-12"]),
        ({"day_of_week": "funday"}, ["day_of_week", "0-7"]),
        ({"minute": "*/0"}, ["minute", "step"]),
        ({"minute": "30-10"}, ["minute", "backwards"]),
        ({"minute": ""}, ["minute", "0-59"]),
        ({"minute": "1,,2"}, ["minute", "0-59"]),
        ({"minute": True}, ["minute"]),
        ({"minute": 1.5}, ["minute"]),
        ({"minute": [1, "x"]}, ["minute", "0-59"]),
        ({"minute": []}, ["minute", "no values"]),
        ({"day_of_month": "30,31", "month_of_year": 2}, ["never runs"]),
        ({"tz": "Mars/Olympus_Mons"}, ["unknown time zone", "Mars/Olympus_Mons"]),
    ],
)
def test_crontab_rejects_bad_fields(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        crontab(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_crontab_describes_itself_in_cron_order() -> None:
    assert crontab(30, 2, tz="Europe/Berlin").describe() == "crontab 30 2 * * * Europe/Berlin"
    assert crontab("*/15", "9-17", "mon-fri").describe() == "crontab */15 9-17 * * 1-5 UTC"
    assert (
        crontab("0,1,2,3,10", 0, "sat,sun", "1-21/10", "jan,feb").describe()
        == "crontab 0-3,10 0 1-21/10 1,2 0,6 UTC"
    )


def test_crontab_equality_is_by_fields() -> None:
    assert crontab(minute="0,30") == crontab(minute=[30, 0])
    assert hash(crontab(minute="0,30")) == hash(crontab(minute=[30, 0]))
    assert crontab(day_of_week=7) == crontab(day_of_week="sun")
    assert crontab(minute=0) != crontab(minute=0, tz="UTC")  # only one follows the app's zone
    assert crontab(minute=0, tz="Europe/Berlin") != crontab(minute=0, tz="America/New_York")


# --- crontab: next runs -------------------------------------------------------------------------


def test_crontab_next_runs_on_ordinary_days() -> None:
    schedule = crontab(minute="*/15", hour="9-10")
    assert first(schedule, utc(2026, 11, 25, 10, 40, 12), 4) == [
        utc(2026, 11, 25, 10, 45),
        utc(2026, 11, 26, 9, 0),
        utc(2026, 11, 26, 9, 15),
        utc(2026, 11, 26, 9, 30),
    ]
    # Strictly after: a run's own moment gives the next run.
    assert schedule.next_after(utc(2026, 11, 26, 9, 15)) == utc(2026, 11, 26, 9, 30)


def test_crontab_skips_months_without_the_day() -> None:
    assert first(crontab(0, 0, day_of_month=31), utc(2026, 1, 31, 12), 4) == [
        utc(2026, 3, 31),
        utc(2026, 5, 31),
        utc(2026, 7, 31),
        utc(2026, 8, 31),
    ]
    assert first(crontab(0, 12, day_of_month=30), utc(2027, 1, 30, 13), 2) == [
        utc(2027, 3, 30, 12),
        utc(2027, 4, 30, 12),
    ]


def test_crontab_leap_day() -> None:
    schedule = crontab(0, 0, day_of_month=29, month_of_year=2)
    assert first(schedule, utc(2026, 1, 1), 3) == [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)]
    # On a Monday too: the next Monday 29 February is years away, not never.
    monday = next(
        day
        for year in range(2026, 2200)
        if calendar.isleap(year)
        for day in [date(year, 2, 29)]
        if day.weekday() == 0
    )
    assert crontab(0, 0, "mon", 29, 2).next_after(utc(2026, 1, 1)) == datetime.combine(
        monday, datetime.min.time(), UTC
    )


def test_crontab_needs_both_day_of_week_and_day_of_month() -> None:
    friday_13th = crontab(0, 0, day_of_week="fri", day_of_month=13)
    found = runs(friday_13th, utc(2026, 1, 1), utc(2027, 1, 1))
    assert found == [utc(2026, 2, 13), utc(2026, 3, 13), utc(2026, 11, 13)]
    assert all(run.weekday() == 4 and run.day == 13 for run in found)


def test_crontab_rejects_naive_moments() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        crontab().next_after(datetime(2026, 1, 1))


# --- crontab: clock changes ---------------------------------------------------------------------


def per_local_date(found: list[datetime], tz: ZoneInfo) -> Counter:
    return Counter(run.astimezone(tz).date() for run in found)


@pytest.mark.parametrize(
    "tz, day, expected_local",
    [
        # Spring forward: 02:30 does not exist; it runs once, at 03:30 on the new clock.
        (BERLIN, date(2026, 3, 29), datetime(2026, 3, 29, 3, 30)),
        (NEW_YORK, date(2026, 3, 8), datetime(2026, 3, 8, 3, 30)),
        # Fall back: in Berlin 02:30 happens twice and runs at the first (summer time, +02:00).
        (BERLIN, date(2026, 10, 25), datetime(2026, 10, 25, 2, 30)),
        (NEW_YORK, date(2026, 11, 1), datetime(2026, 11, 1, 2, 30)),
    ],
)
def test_crontab_daily_job_runs_once_on_clock_change_days(
    tz: ZoneInfo, day: date, expected_local: datetime
) -> None:
    schedule = crontab(30, 2, tz=tz)
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), tz)
    found = runs(schedule, start, start + timedelta(days=3))
    assert per_local_date(found, tz) == {day - timedelta(days=1): 1, day: 1, day + timedelta(days=1): 1}
    on_day = [run for run in found if run.astimezone(tz).date() == day]
    assert on_day == [expected_local.replace(tzinfo=tz).astimezone(UTC)]  # fold=0: the first


def test_crontab_runs_the_first_of_a_repeated_time() -> None:
    run = crontab(30, 2, tz=BERLIN).next_after(datetime(2026, 10, 25, tzinfo=BERLIN))
    assert run == utc(2026, 10, 25, 0, 30) and run.astimezone(BERLIN).utcoffset() == timedelta(hours=2)
    run = crontab(30, 1, tz=NEW_YORK).next_after(datetime(2026, 11, 1, tzinfo=NEW_YORK))
    assert run == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, not 01:30 EST an hour later
    # From within the repeat the day's run is already past: the next one is tomorrow.
    second_0210 = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN)
    assert crontab(30, 2, tz=BERLIN).next_after(second_0210) == utc(2026, 10, 26, 1, 30)


def test_crontab_skipped_time_is_still_due_just_after_the_jump() -> None:
    # 03:10 CEST is after the jump but before 03:30, when the skipped 02:30 runs.
    moment = datetime(2026, 3, 29, 3, 10, tzinfo=BERLIN)
    assert crontab(30, 2, tz=BERLIN).next_after(moment) == utc(2026, 3, 29, 1, 30)


def test_crontab_runs_in_time_order_after_a_half_hour_jump() -> None:
    # Lord Howe Island jumps from 02:00 to 02:30: 02:20 runs at 02:50, after 02:40.
    tz = ZoneInfo("Australia/Lord_Howe")
    found = first(crontab("20,40", 2, tz=tz), datetime(2026, 10, 4, 1, tzinfo=tz), 2)
    assert [run.astimezone(tz).strftime("%H:%M") for run in found] == ["02:40", "02:50"]


@pytest.mark.parametrize(
    "tz, spring, fall",
    [
        (BERLIN, date(2026, 3, 29), date(2026, 10, 25)),
        (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_crontab_hourly_job_across_clock_changes(tz: ZoneInfo, spring: date, fall: date) -> None:
    hourly = crontab(minute=0, tz=tz)
    for day, expected in ((spring, 23), (fall, 24)):
        start = datetime.combine(day - timedelta(days=1), datetime.min.time(), tz)
        found = runs(hourly, start - timedelta(minutes=1), start + timedelta(days=3))
        assert all(a < b for a, b in zip(found, found[1:], strict=False))  # strictly increasing, so distinct
        walls = Counter(run.astimezone(tz).replace(tzinfo=None, fold=0) for run in found)
        assert max(walls.values()) == 1  # each wall-clock time once
        counts = per_local_date(found, tz)
        assert counts[day - timedelta(days=1)] == counts[day + timedelta(days=1)] == 24
        assert counts[day] == expected  # the skipped 02:00 is the 03:00 run


# --- solar --------------------------------------------------------------------------------------

PLACES = {"berlin": (52.52, 13.405), "new_york": (40.7128, -74.006), "sydney": (-33.8688, 151.2093)}
DATES = [date(2026, 1, 15), date(2026, 3, 20), date(2026, 6, 21), date(2026, 9, 23), date(2026, 12, 21)]
ASTRAL = {
    "sunrise": astral_sun.sunrise,
    "sunset": astral_sun.sunset,
    "solar_noon": astral_sun.noon,
    "dawn_civil": lambda observer, day: astral_sun.dawn(observer, day, depression=6),
    "dusk_civil": lambda observer, day: astral_sun.dusk(observer, day, depression=6),
    "dawn_nautical": lambda observer, day: astral_sun.dawn(observer, day, depression=12),
    "dusk_astronomical": lambda observer, day: astral_sun.dusk(observer, day, depression=18),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("event", ASTRAL)
def test_solar_matches_astral_within_a_minute(place: str, event: str) -> None:
    lat, lon = PLACES[place]
    schedule = solar(event, lat, lon)
    compared = 0
    for day in DATES:
        try:
            reference = ASTRAL[event](Observer(lat, lon), day)
        except ValueError:  # e.g. no astronomical dusk in a Berlin June
            continue
        found = schedule.next_after(reference - timedelta(hours=3))
        assert abs((found - reference).total_seconds()) <= 60, (day, found, reference)
        compared += 1
    assert compared >= 4


def test_solar_skips_days_without_the_event() -> None:
    # No astronomical night in Berlin around midsummer: the next dusk is in July.
    lat, lon = PLACES["berlin"]
    found = solar("dusk_astronomical", lat, lon).next_after(utc(2026, 6, 21))
    assert utc(2026, 7, 5) < found < utc(2026, 7, 31)
    after = solar("dusk_astronomical", lat, lon).next_after(found)
    assert timedelta(hours=23) < after - found < timedelta(hours=25)  # nights are back


def test_solar_polar_night_and_day_in_tromso() -> None:
    sunrise = solar("sunrise", 69.65, 18.96).next_after(utc(2026, 12, 1))
    assert utc(2027, 1, 14) < sunrise < utc(2027, 1, 17)  # the sun returns mid-January
    sunset = solar("sunset", 69.65, 18.96).next_after(utc(2026, 6, 1))
    assert utc(2026, 7, 24) < sunset < utc(2026, 7, 28)  # midnight sun until late July
    assert solar("sunrise", 90, 0).next_after(utc(2026, 1, 1)) is None  # never, at the pole


def test_solar_events_come_once_a_day_in_order() -> None:
    lat, lon = PLACES["sydney"]
    found = runs(solar("sunrise", lat, lon), utc(2026, 1, 1), utc(2027, 1, 1))
    assert len(found) == 365
    gaps = [b - a for a, b in zip(found, found[1:], strict=False)]
    assert all(timedelta(hours=23, minutes=58) < gap < timedelta(hours=24, minutes=2) for gap in gaps)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("moonrise", 0, 0), ["moonrise", "sunrise", "dusk_astronomical"]),
        (("sunset", 90.5, 0), ["lat", "[-90, 90]"]),
        (("sunset", 0, -180.1), ["lon", "[-180, 180]"]),
        (("sunset", True, 0), ["lat"]),
        (("sunset", "52", 0), ["lat"]),
    ],
)
def test_solar_validates(args: tuple, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        solar(*args)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_solar_describe_and_equality() -> None:
    assert solar("sunrise", 52.52, 13.405).describe() == "solar sunrise at 52.52, 13.405"
    assert solar("sunrise", 52.52, 13.405) == solar("sunrise", 52.52, 13.405)
    assert solar("sunrise", 52.52, 13.405) != solar("sunset", 52.52, 13.405)
    assert solar("sunrise", 1, 2).with_default_timezone(BERLIN) == solar("sunrise", 1, 2)


# --- rrule --------------------------------------------------------------------------------------


def test_rrule_string_form() -> None:
    schedule = rrule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", tz="Europe/Berlin")
    assert first(schedule, utc(2026, 11, 25), 2) == [utc(2026, 11, 30, 8), utc(2026, 12, 7, 8)]
    assert schedule == rrule("RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", tz="Europe/Berlin")
    assert schedule.describe() == "rrule FREQ=WEEKLY;BYDAY=MO;BYHOUR=9 Europe/Berlin"


def test_rrule_keyword_form() -> None:
    schedule = rrule(freq="daily", interval=2, byhour=9, dtstart=datetime(2026, 1, 1))
    assert first(schedule, utc(2025, 6, 1), 3) == [utc(2026, 1, 1, 9), utc(2026, 1, 3, 9), utc(2026, 1, 5, 9)]
    assert schedule.describe() == "rrule FREQ=DAILY;INTERVAL=2;BYHOUR=9 UTC"
    weekly = rrule(freq="WEEKLY", byweekday=["MO", "FR"], byhour=9, tz="America/New_York")
    assert first(weekly, utc(2026, 11, 25), 2) == [utc(2026, 11, 27, 14), utc(2026, 11, 30, 14)]
    aware_start = datetime(2026, 1, 1, 8, tzinfo=UTC)  # 09:00 in Berlin
    assert rrule(freq="daily", dtstart=aware_start, tz=BERLIN).next_after(utc(2026, 7, 1)) == utc(
        2026, 7, 1, 7
    )


@pytest.mark.parametrize(
    "freq, dtstart, kwargs",
    [
        (du.HOURLY, datetime(2023, 1, 1, 0, 0, 13), {"interval": 5, "byminute": 7}),
        (du.MINUTELY, datetime(2026, 11, 20, 0, 0, 13), {"interval": 7}),
        (du.WEEKLY, datetime(2000, 1, 1), {"interval": 3, "byweekday": (du.TU, du.SA), "byhour": (6, 18)}),
        (du.DAILY, datetime(2000, 1, 1), {"interval": 11, "bysetpos": -1, "byhour": (1, 2, 3)}),
    ],
)
def test_rrule_far_from_dtstart_matches_dateutil(freq: int, dtstart: datetime, kwargs: dict) -> None:
    # Restarting long rules near the moment must not move their occurrences. (dateutil itself,
    # the reference, walks from dtstart: hence the later starts for the frequent rules.)
    name = {du.HOURLY: "hourly", du.MINUTELY: "minutely", du.WEEKLY: "weekly", du.DAILY: "daily"}[freq]
    reference = du.rrule(freq, dtstart=dtstart, **kwargs)
    schedule = rrule(freq=name, dtstart=dtstart, **kwargs)
    moment = datetime(2026, 11, 25, 10, 11, 12)
    expected = [reference.after(moment)]
    while len(expected) < 5:
        expected.append(reference.after(expected[-1]))
    assert first(schedule, moment.replace(tzinfo=UTC), 5) == [e.replace(tzinfo=UTC) for e in expected]


def test_rrule_ends() -> None:
    counted = rrule(freq="daily", count=2, byhour=9, dtstart=datetime(2026, 1, 1))
    assert runs(counted, utc(2025, 1, 1), utc(2030, 1, 1)) == [utc(2026, 1, 1, 9), utc(2026, 1, 2, 9)]
    assert counted.next_after(utc(2026, 1, 2, 9)) is None
    until = rrule("FREQ=DAILY;UNTIL=20260103T000000", dtstart=datetime(2026, 1, 1))
    assert until.next_after(utc(2026, 1, 2)) == utc(2026, 1, 3)  # UNTIL is inclusive
    assert until.next_after(utc(2026, 1, 3)) is None


def test_rrule_follows_the_crontab_rule_across_clock_changes() -> None:
    schedule = rrule(freq="daily", byhour=2, byminute=30, tz=BERLIN)
    for day in (date(2026, 3, 29), date(2026, 10, 25)):
        start = datetime.combine(day - timedelta(days=1), datetime.min.time(), BERLIN)
        found = runs(schedule, start, start + timedelta(days=3))
        assert found == runs(crontab(30, 2, tz=BERLIN), start, start + timedelta(days=3))
        assert set(per_local_date(found, BERLIN).values()) == {1} and len(found) == 3


@pytest.mark.parametrize(
    "args, kwargs, fragment",
    [
        ((), {}, "either"),
        (("FREQ=DAILY",), {"freq": "daily"}, "either"),
        (("FREQ=DAILY",), {"byhour": 9}, "freq="),
        ((), {"freq": "fortnightly"}, "yearly, monthly"),
        (("FREQ=FOO",), {}, "FREQ=FOO"),
        (("nonsense",), {}, "nonsense"),
        (("DTSTART:20260101T000000\nRRULE:FREQ=DAILY",), {}, "dtstart="),
        ((), {"freq": "daily", "bogus": 1}, "bogus"),
    ],
)
def test_rrule_validates(args: tuple, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match="rrule") as info:
        rrule(*args, **kwargs)
    assert fragment in str(info.value)


# --- app time zone and the registry -------------------------------------------------------------


def test_with_default_timezone_fills_only_missing_zones() -> None:
    for plain, explicit in (
        (crontab(0, 9), crontab(0, 9, tz="UTC")),
        (rrule(freq="daily", byhour=9), rrule(freq="daily", byhour=9, tz="UTC")),
    ):
        in_berlin = plain.with_default_timezone(BERLIN)
        assert in_berlin is not plain and plain.tz is None  # a copy; the original keeps following
        assert in_berlin.next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 7)
        assert plain.next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 9)
        assert explicit.with_default_timezone(BERLIN) is explicit
    assert every(10).with_default_timezone(BERLIN) == every(10)


def test_schedule_types_come_from_the_builtin_plugin() -> None:
    registry = get_plugins().schedule_types

    def factory_for(name: str):
        return registry.get(name).factory

    assert build_schedule("*/5 * * * *", factory_for) == crontab(minute="*/5")
    assert build_schedule("0 9 1 jan-jun mon", factory_for) == crontab(0, 9, "mon", 1, "jan-jun")
    assert build_schedule(
        {"type": "crontab", "minute": "*/5", "tz": "Europe/Berlin"}, factory_for
    ) == crontab(minute="*/5", tz=BERLIN)
    assert build_schedule({"type": "every", "interval": 10}, factory_for) == every(10)
    assert build_schedule(
        {"type": "solar", "event": "sunset", "lat": 52.52, "lon": 13.405}, factory_for
    ) == solar("sunset", 52.52, 13.405)
    assert build_schedule({"type": "rrule", "freq": "daily", "byhour": 9}, factory_for) == rrule(
        freq="daily", byhour=9
    )
    assert build_schedule({"type": "rrule", "rule": "FREQ=DAILY;BYHOUR=9"}, factory_for) == rrule(
        freq="daily", byhour=9
    )
    assert (kq.crontab, kq.every, kq.rrule, kq.solar) == (crontab, every, rrule, solar)


def test_entries_take_the_app_time_zone() -> None:
    app = kq.App(
        "tz",
        broker="memory://",
        backend=None,
        timezone="Europe/Berlin",
        beat_schedule={
            "nightly": {"task": "x", "schedule": "30 2 * * *"},
            "in_utc": {"task": "x", "schedule": {"type": "crontab", "minute": 30, "hour": 2, "tz": "UTC"}},
            "weekly": {"task": "x", "schedule": {"type": "rrule", "rule": "FREQ=WEEKLY;BYHOUR=9"}},
        },
    )
    entries = {entry.name: entry.schedule for entry in load_entries(app)}
    assert entries["nightly"] == crontab(30, 2, tz="Europe/Berlin")
    assert entries["nightly"].describe() == "crontab 30 2 * * * Europe/Berlin"
    assert entries["in_utc"].next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 2, 30)
    assert entries["weekly"] == rrule("FREQ=WEEKLY;BYHOUR=9", tz="Europe/Berlin")
