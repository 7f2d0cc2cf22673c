"""Rate limits: parsing, the per-worker token bucket, the shared slots, and the worker's throttle,
driven by a hand-turned clock (no sleeps). Shared limits count in the in-process memory backend,
and an outage is a real Redis client pointed at a port where nothing listens."""

import logging
import math
import uuid

import pytest

from kq import App
from kq.exceptions import ConfigurationError
from kq.pool import Job
from kq.protocol import TaskMessage
from kq.ratelimit import (
    GRACE,
    Lane,
    Rate,
    SharedLimit,
    Throttle,
    TokenBucket,
    parse_rate,
    worker_throttle,
)
from kq.worker import Worker


class Clock:
    """Both of a worker's clocks, moved by the test: monotonic ``now`` and wall ``time``."""

    def __init__(self, wall_offset: float = 1_000_000.0) -> None:
        self.now = 100.0
        self.offset = wall_offset

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app():
    return App("rates", broker="memory://", backend="memory://")


def job(task: str, n: int = 0) -> Job:
    return Job(TaskMessage(id=f"{task}-{n}", task=task), "celery", ticket=n)


def shared(app: App, clock: Clock, rate: str, task: str | None = None) -> SharedLimit:
    """A limit on a task name of its own: memory counters are shared by the whole process."""
    return SharedLimit(
        task or f"t-{uuid.uuid4().hex}", parse_rate(rate), lambda: app.backend, clock=clock.time
    )


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "count", "unit", "interval"),
    [
        ("100/m", 100, "m", 0.6),
        ("10/s", 10, "s", 0.1),
        ("3600/h", 3600, "h", 1.0),
        ("5", 5, "s", 0.2),
        (2.5, 2.5, "s", 0.4),
        (4, 4, "s", 0.25),
        (" 30 / m ", 30, "m", 2.0),
        ("0.5/s", 0.5, "s", 2.0),
    ],
)
def test_rates(value, count, unit, interval):
    rate = parse_rate(value)
    assert (rate.count, rate.unit) == (count, unit)
    assert math.isclose(rate.interval, interval)
    assert parse_rate(str(rate)) == rate


def test_none_is_no_limit():
    assert parse_rate(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "ten/s",
        "10/d",
        "10/",
        "/s",
        "",
        "0",
        "0/m",
        0,
        -1,
        "-5/s",
        True,
        "10/s/s",
        "inf",
        math.inf,
        math.nan,
        [10],
    ],
)
def test_bad_rates(value):
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(value)


def test_a_bad_task_option_names_the_task(app):
    with pytest.raises(ValueError, match="rates.bad: rate_limit: .*'fast'"):
        app.task(name="rates.bad", rate_limit="fast")(lambda: None)
    with pytest.raises(ValueError, match="rates.bad: global_rate_limit: .*'0/s'"):
        app.task(name="rates.bad", global_rate_limit="0/s")(lambda: None)
    assert "rates.bad" not in app.tasks


def test_task_default_rate_limit_applies_to_tasks_without_their_own(monkeypatch):
    monkeypatch.setenv("KQ_TASK_DEFAULT_RATE_LIMIT", "30/m")
    app = App("rates", broker="memory://", backend="memory://")
    plain = app.task(name="rates.plain")(lambda: None)
    own = app.task(name="rates.own", rate_limit=5, global_rate_limit="1/h")(lambda: None)
    assert plain.rate_limit == Rate(30, "m") and plain.global_rate_limit is None
    assert own.rate_limit == Rate(5, "s") and own.global_rate_limit == Rate(1, "h")


def test_a_bad_default_rate_limit_names_the_setting():
    with pytest.raises(ConfigurationError, match="task_default_rate_limit: .*'lots'"):
        App("rates", task_default_rate_limit="lots").conf  # noqa: B018


# -- the per-worker bucket ----------------------------------------------------------------


def test_token_bucket_spaces_takes_by_the_interval_without_bursts(clock):
    bucket = TokenBucket(Rate(4, "s"), clock=clock)
    assert bucket.wait_time() == 0.0 and bucket.take()  # the first goes at once
    assert not bucket.take()
    assert bucket.wait_time() == 0.25
    clock.now += 0.125
    assert bucket.wait_time() == 0.125 and not bucket.take()
    clock.now += 0.125
    assert bucket.take()
    clock.now += 60  # a long quiet spell earns one token, not a burst
    assert bucket.take() and not bucket.take()


# -- the shared limit ---------------------------------------------------------------------


def test_one_worker_owns_each_slot_and_starts_at_its_beginning(app, clock):
    first = shared(app, clock, "2/s")
    second = SharedLimit(first.task, Rate(2, "s"), lambda: app.backend, clock=clock.time)
    clock.now += 0.125  # a quarter into a slot of 0.5 s
    assert first.claim() == (True, 0.375)  # the next slot, which begins in 0.375 s
    assert second.claim() == (False, 0.375)
    clock.now += 0.375  # at the boundary: both go for the slot after it
    assert second.claim() == (True, 0.5)
    assert first.claim() == (False, 0.5)


def test_a_claim_answered_after_its_slot_began_is_void(app):
    readings = iter([1000.25, 1000.75])  # a slow round trip: the slot began at 1000.5
    limit = SharedLimit(
        f"t-{uuid.uuid4().hex}", Rate(2, "s"), lambda: app.backend, clock=lambda: next(readings)
    )
    assert limit.claim() == (False, 0.0)


def test_limits_of_different_tasks_do_not_meet(app, clock):
    assert shared(app, clock, "2/s").claim()[0]
    assert shared(app, clock, "2/s").claim()[0]


def test_a_clock_off_by_a_whole_ring_loses_its_turn_rather_than_doubling_one(app, clock):
    limit = shared(app, clock, "2/s")
    other = SharedLimit(limit.task, Rate(2, "s"), lambda: app.backend, clock=clock.time)
    assert limit.claim()[0]
    clock.offset += limit._ring * limit.interval  # the same counter, for a later slot
    assert not other.claim()[0]


# -- the throttle -------------------------------------------------------------------------


def test_only_limited_tasks_are_held(clock):
    throttle = Throttle({"limited": Lane(TokenBucket(Rate(4, "s"), clock=clock), None)}, clock=clock)
    assert not throttle.hold(job("free"))
    assert throttle.hold(job("limited"))
    assert len(throttle) == 1


def test_per_worker_limit_releases_one_job_per_interval_and_only_into_free_slots(clock):
    throttle = Throttle({"limited": Lane(TokenBucket(Rate(4, "s"), clock=clock), None)}, clock=clock)
    for n in range(3):
        throttle.hold(job("limited", n))
    assert throttle.release(free=0) == []
    assert throttle.next_due(free=False) == math.inf  # no free slot: nothing to wake up for
    assert [j.ticket for j in throttle.release(free=4)] == [0]
    assert throttle.next_due(free=True) == 100.25
    clock.now = 100.2
    assert throttle.release(free=4) == []
    clock.now = 100.25
    assert [j.ticket for j in throttle.release(free=4)] == [1]
    assert len(throttle) == 1
    assert [j.ticket for j in throttle.drain()] == [2]
    assert len(throttle) == 0 and throttle.next_due(free=True) == math.inf


def test_shared_limit_claims_then_releases_at_the_slot(app, clock):
    limit = shared(app, clock, "2/s")
    throttle = Throttle({"limited": Lane(None, limit)}, clock=clock)
    throttle.hold(job("limited", 0))
    throttle.hold(job("limited", 1))
    clock.now += 0.125
    assert throttle.release(free=1) == []  # claimed the slot beginning in 0.375 s
    assert throttle.next_due(free=False) == clock.now + 0.375  # a claimed slot always wakes it
    clock.now += 0.375
    assert [j.ticket for j in throttle.release(free=2)] == [0]
    # With a pool slot to spare, the next job claimed the slot after at once.
    assert throttle.next_due(free=False) == clock.now + 0.5


def test_a_won_slot_waits_a_moment_for_a_pool_slot(app, clock):
    throttle = Throttle({"limited": Lane(None, shared(app, clock, "2/s"))}, clock=clock)
    throttle.hold(job("limited"))
    throttle.release(free=1)  # wins the slot beginning in 0.5 s
    clock.now += 0.5
    assert throttle.release(free=0) == []  # the pool filled up meanwhile
    assert throttle.next_due(free=False) == math.inf  # a finishing task wakes the worker
    clock.now += GRACE
    assert len(throttle.release(free=1)) == 1  # a slot freed in time


@pytest.mark.parametrize("free", [0, 1])
def test_a_won_slot_is_given_up_when_it_cannot_start_in_time(app, clock, free):
    """Pool full, or the worker busy elsewhere: past GRACE a start would come too close to the
    next slot's, so it claims a later slot instead."""
    throttle = Throttle({"limited": Lane(None, shared(app, clock, "2/s"))}, clock=clock)
    throttle.hold(job("limited"))
    throttle.release(free=1)
    clock.now += 0.5 + 2 * GRACE
    assert throttle.release(free=free) == []
    clock.now += 0.125
    assert throttle.release(free=1) == []  # claimed the slot after
    clock.now += 0.375 - 2 * GRACE
    assert len(throttle.release(free=1)) == 1


def test_both_limits_on_one_task(app, clock):
    lane = Lane(TokenBucket(Rate(1, "s"), clock=clock), shared(app, clock, "4/s"))
    throttle = Throttle({"limited": lane}, clock=clock)
    for n in range(2):
        throttle.hold(job("limited", n))
    throttle.release(free=2)  # claims the next shared slot, 0.25 s away
    clock.now += 0.25
    assert len(throttle.release(free=2)) == 1
    assert lane.due == clock.now + 1.0  # the worker's own limit is the slower one
    clock.now += 1.0
    throttle.release(free=2)
    clock.now += 0.25
    assert len(throttle.release(free=2)) == 1


def test_a_backend_outage_keeps_the_jobs_and_retries_with_backoff(app, clock, caplog):
    down = App("down", broker="memory://", backend="redis://127.0.0.1:1/0")
    backend = {"now": down.backend}
    limit = SharedLimit("rates.outage", Rate(2, "s"), lambda: backend["now"], clock=clock.time)
    throttle = Throttle({"limited": Lane(None, limit)}, clock=clock)
    throttle.hold(job("limited"))
    waits = []
    with caplog.at_level(logging.WARNING, logger="kq.ratelimit"):
        for _ in range(4):
            assert throttle.release(free=1) == []
            waits.append(throttle.next_due(free=True) - clock.now)
            clock.now += waits[-1]
        assert waits == [0.25, 0.5, 1.0, 2.0]
        assert len(throttle) == 1
        backend["now"] = app.backend  # the backend is back
        throttle.release(free=1)
        clock.now = throttle.next_due(free=True)
        assert len(throttle.release(free=1)) == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "rates.outage" in errors[0].message
    assert "back after 4 failed tries" in caplog.records[-1].message
    down.close()


# -- the worker ---------------------------------------------------------------------------


def test_no_limits_no_throttle(app):
    app.task(name="rates.plain")(lambda: None)
    assert worker_throttle(app) is None


def test_every_limited_task_gets_a_lane(app):
    app.task(name="rates.plain")(lambda: None)
    app.task(name="rates.local", rate_limit="1/s")(lambda: None)
    app.task(name="rates.global", global_rate_limit="1/s")(lambda: None)
    throttle = worker_throttle(app)
    assert not throttle.hold(job("rates.plain"))
    assert throttle.hold(job("rates.local")) and throttle.hold(job("rates.global"))


@pytest.mark.parametrize(
    ("backend", "says"), [(None, "there is no result backend"), ("rpc://", "rpc:// keeps no counters")]
)
def test_a_global_limit_without_counters_fails_at_worker_start(backend, says):
    app = App("rates", broker="memory://", backend=backend)
    app.task(name="rates.global", global_rate_limit="10/s")(lambda: None)
    with pytest.raises(ConfigurationError) as info:
        Worker(app, pool="solo")
    message = str(info.value)
    assert "rates.global" in message and says in message
    assert "redis://" in message and "sqlite://" in message  # where it would work
