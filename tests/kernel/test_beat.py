"""Beat's kernel parts without a store: schedules as entries, validation, and the missed-run plan."""

from datetime import datetime, timedelta, timezone

import pytest

from kq import App
from kq.beat import Entry, build_entry, build_schedule, every, load_entries
from kq.beat.entry import plan
from kq.config import Settings
from kq.exceptions import ConfigurationError, KQError

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def no_types(name: str):
    raise LookupError(f"no schedule type {name!r}")


def test_every_counts_slots_from_the_anchor_not_from_now():
    assert every(1).next_after(T0 + seconds(0.5)) == T0 + seconds(1)
    assert every(1).next_after(T0) == T0 + seconds(1)  # strictly after
    assert every(60).next_after(T0 + seconds(59.999)) == T0 + seconds(60)
    assert every(timedelta(hours=1), anchor=T0 + seconds(15)).next_after(T0) == T0 + seconds(15)
    assert every(30).describe() == "every 30s" and every(7200).describe() == "every 2h"
    with pytest.raises(ValueError, match="positive"):
        every(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        every(1).next_after(datetime(2026, 1, 1))


def test_every_never_returns_a_slot_at_or_before_the_moment_after_float_rounding():
    schedule = every(0.1)
    moment = T0
    for _ in range(1000):
        nxt = schedule.next_after(moment)
        assert nxt > moment and nxt - moment <= seconds(0.1)
        moment = nxt


def test_schedule_values_users_write():
    assert build_schedule(5, no_types) == every(5)
    assert build_schedule(timedelta(minutes=1), no_types) == every(60)
    made = []
    build_schedule({"type": "every", "interval": 3}, lambda name: made.append(name) or every)
    assert made == ["every"]
    with pytest.raises(ValueError, match="five-field crontab"):
        build_schedule("* * *", no_types)
    with pytest.raises(ValueError, match="expected a schedule"):
        build_schedule(True, no_types)


def test_entry_validation_names_the_entry_and_the_problem():
    entry = build_entry(
        "e",
        {
            "task": "t",
            "schedule": 2,
            "args": [1],
            "kwargs": {"a": 1},
            "options": {"queue": "q", "expires": 30},
            "missed": "all",
        },
        no_types,
    )
    assert entry == Entry("e", "t", every(2), (1,), {"a": 1}, {"queue": "q", "expires": 30}, "all")
    bad = [
        ({"schedule": 1}, "'task' must be a task name"),
        ({"task": "t"}, "'schedule' is missing"),
        ({"task": "t", "schedule": 1, "when": 2}, r"unknown key\(s\) \['when'\]"),
        ({"task": "t", "schedule": {"type": "nope"}}, "invalid schedule"),
        ({"task": "t", "schedule": 1, "args": "ab"}, "'args' must be a list"),
        (
            {"task": "t", "schedule": 1, "options": {"task_id": "x"}},
            r"option\(s\) \[.task_id.\] cannot be set",
        ),
        ({"task": "t", "schedule": 1, "missed": "later"}, "'missed' must be one of once, all, skip"),
    ]
    for spec, message in bad:
        with pytest.raises(ConfigurationError, match=r"beat_schedule\['e'\]: " + message):
            build_entry("e", spec, no_types)


def test_task_ids_are_the_same_for_one_slot_and_differ_between_slots():
    entry = Entry("e", "t", every(1))
    assert entry.task_id(T0) == entry.task_id(T0)
    assert entry.task_id(T0) != entry.task_id(T0 + seconds(1))
    assert Entry("f", "t", every(1)).task_id(T0) != entry.task_id(T0)


def test_plan_sends_on_time_slots_whatever_the_policy():
    for policy in ("once", "all", "skip"):
        todo = plan(every(1), T0, T0 + seconds(1.01), policy, 100, leading_since=T0 - seconds(60))
        assert todo.publish == (T0 + seconds(1),) and todo.advance_to == T0 + seconds(1)
        assert todo.skipped == 0


def test_plan_after_an_outage_follows_the_policy():
    last, since, now = T0, T0 + seconds(5.5), T0 + seconds(6.2)  # slots 1..5 missed, 6 on time
    missed = tuple(T0 + seconds(n) for n in range(1, 6))
    on_time = (T0 + seconds(6),)
    assert plan(every(1), last, now, "all", 100, since).publish == missed + on_time
    once = plan(every(1), last, now, "once", 100, since)
    assert once.publish == (T0 + seconds(5), T0 + seconds(6)) and once.skipped == 4
    skip = plan(every(1), last, now, "skip", 100, since)
    assert skip.publish == on_time and skip.skipped == 5
    for todo in (once, skip):
        assert todo.advance_to == T0 + seconds(6)


def test_plan_does_not_walk_a_long_outage_slot_by_slot():
    now = T0 + timedelta(days=30)
    todo = plan(every(1), T0, now, "all", 50, leading_since=now)
    assert len(todo.publish) == 50 and todo.truncated and todo.advance_to == now
    assert plan(every(1), T0, now, "skip", 50, leading_since=now).publish == ()


def test_plan_after_more_missed_slots_than_max_catchup_sends_the_newest():
    now = T0 + seconds(200.5)
    every_ = plan(every(1), T0, now, "all", 50, leading_since=now)
    assert every_.publish == tuple(T0 + seconds(n) for n in range(151, 201))
    assert every_.skipped == 150 and not every_.truncated
    assert every_.advance_to == T0 + seconds(200)
    assert plan(every(1), T0, now, "once", 50, leading_since=now).publish == (T0 + seconds(200),)


def test_nothing_due_plans_nothing():
    assert plan(every(10), T0, T0 + seconds(9), "all", 100, T0).advance_to is None


def test_periodic_registers_the_task_and_its_entry():
    app = App("p", broker="memory://", backend=None)

    @app.periodic(every(30), args=(1,), options={"queue": "q"}, missed="skip")
    def ping(n):
        return n

    assert app.tasks[ping.name] is ping
    app.periodic(every(60), name="ping-slow")(ping)
    entries = {e.name: e for e in load_entries(app)}
    assert entries[ping.name] == Entry(ping.name, ping.name, every(30), (1,), {}, {"queue": "q"}, "skip")
    assert entries["ping-slow"].schedule == every(60)
    with pytest.raises(KQError, match="already exists"):
        app.periodic(every(1))(ping)


def test_beat_schedule_and_periodic_names_must_not_clash():
    app = App("p", broker="memory://", backend=None, beat_schedule={"job": {"task": "x", "schedule": 1}})
    app.periodic(every(1), name="job")(lambda: None)
    with pytest.raises(ConfigurationError, match="both in beat_schedule and an @app.periodic"):
        load_entries(app)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"beat_missed": "never"}, "beat_missed must be one of once, all, skip"),
        ({"timezone": "Mars/Olympus"}, "timezone must be an IANA time zone"),
        ({"beat_lease": 0}, "beat_lease must be a number > 0"),
    ],
)
def test_beat_settings_are_validated(setting, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.build(setting)
