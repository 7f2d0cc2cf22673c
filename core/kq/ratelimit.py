"""Rate limits: how often a task may start, on each worker or across all of them.

``rate_limit="10/s"`` spaces a task's starts on one worker at least ``1/10`` s apart;
``global_rate_limit="10/s"`` spaces them across every worker sharing the result backend, whose
atomic counters (``ResultBackend.incr``) settle which worker takes each turn. Both mean the
same thing: starts at least ``period / count`` apart, so no ``period`` long window holds more
than ``count`` of them, and no burst after a quiet spell.

A worker never blocks on a limit. It hands each job of a limited task to its :class:`Throttle`,
which keeps them in arrival order (they still count against the prefetch window) while other
tasks run, and asks :meth:`Throttle.release` for the ones whose turn has come each time it
dispatches. Only limited tasks get here; tasks without a limit never meet this module.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from .backend import ResultBackend
from .exceptions import BackendUnavailable, ConfigurationError
from .pool import Job

log = logging.getLogger("kq.ratelimit")

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*([smh]))?\s*")
#: How far apart workers' clocks, plus a round trip to the backend, may be before a global
#: limit's slot counters could be mistaken (see :class:`SharedLimit`). NTP keeps clocks far closer.
CLOCK_SKEW = 0.5
#: How late after its beginning a won global turn may still start (seconds): the worker may
#: have been busy, or found its pool full, when the turn began. Later, it gives the turn up and
#: claims another, since it would start too close to the next turn's start.
GRACE = 0.02
#: Retrying a global limit's counter while the backend is down: first delay, doubling up to the
#: maximum (seconds).
RETRY_FIRST, RETRY_MAX = 0.25, 10.0


@attrs.frozen
class Rate:
    """``count`` starts per ``unit`` (``s``, ``m`` or ``h``)."""

    count: float
    unit: str = attrs.field(default="s", validator=attrs.validators.in_(PERIODS))

    @property
    def period(self) -> float:
        return PERIODS[self.unit]

    @property
    def interval(self) -> float:
        """The least time between two starts, in seconds."""
        return self.period / self.count

    def __str__(self) -> str:
        return f"{self.count:g}/{self.unit}"


def parse_rate(value: str | float | Rate | None) -> Rate | None:
    """``"100/m"``, ``"10/s"``, ``"3600/h"``, or a number (per second); ``None`` is no limit.

    Raises ValueError for anything else, zero included: Celery reads ``0`` as "no limit", but a
    limit of nothing is more likely a mistake than a way to say "none", which is ``None``.
    """
    if value is None or isinstance(value, Rate):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        count, unit = float(value), "s"
    else:
        match = _RATE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            count, unit = math.nan, "s"
        else:
            count, unit = float(match[1]), match[2] or "s"
    if not 0 < count < math.inf:
        raise ValueError(
            f"a rate limit is 'N/s', 'N/m', 'N/h' or N (per second) with N > 0, or "
            f"None for no limit; got {value!r}"
        )
    return Rate(count, unit)


class TokenBucket:
    """One worker's limit: a bucket holding at most one token, refilled ``rate.interval``
    seconds after it was taken. So starts are spaced at least that far apart, and the first one
    after a quiet spell goes at once; a larger bucket would allow bursts above the rate."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.interval = rate.interval
        self._clock = clock
        self._refilled = -math.inf  # when the token is (or was) back in the bucket

    def wait_time(self) -> float:
        """Seconds until the token is there; 0.0 when it is."""
        return max(0.0, self._refilled - self._clock())

    def take(self) -> bool:
        """Take the token if it is there."""
        now = self._clock()
        if now < self._refilled:
            return False
        self._refilled = now + self.interval
        return True


class SharedLimit:
    """One task's limit across every worker, kept in the result backend's counters.

    Time is cut into slots ``rate.interval`` long on the workers' wall clocks. A worker whose
    job's turn comes claims the next slot: it increments that slot's counter, and the one that
    reads 1 owns the slot and starts its job when the slot begins (the others try the slot after).
    So at most one start per slot, each at its slot's beginning: starts are ``interval`` apart
    across all workers, however many there are. Starting at the beginning, not whenever a worker
    happens to claim, is what keeps a window of ``period`` seconds from holding ``count + 1``
    starts; the price is that a task sent to an idle system waits for the next slot (at most
    ``interval``). A claim answered only after its slot began (a slow round trip) is void for
    the same reason. Each claim is one round trip, so this suits modest rates; per-worker limits
    cost nothing.

    Counters are reused in a ring, so that backends without native expiry keep a few rows per
    task rather than one per slot. A slot's claims reach the backend within ``interval +
    2 * CLOCK_SKEW`` of each other, so its counter must live that long; and the next slot on the
    same counter begins long enough after that for the counter to have expired. A clock off by
    more than :data:`CLOCK_SKEW` can only make a claim read more than 1 (a turn is lost), never
    let two workers own one slot.
    """

    def __init__(
        self,
        task: str,
        rate: Rate,
        backend: Callable[[], ResultBackend],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.task = task
        self.interval = rate.interval
        self._backend = backend
        self._clock = clock
        self._expires = self.interval + 2 * CLOCK_SKEW
        self._ring = 2 + math.ceil(4 * CLOCK_SKEW / self.interval)

    def claim(self) -> tuple[bool, float]:
        """Claim the next slot: whether this worker owns it, and seconds until it begins."""
        # A worker woken for a boundary may read the clock a rounding error before it: that
        # counts as on it, or it would claim the slot just beginning instead of the next one.
        slot = math.floor(self._clock() / self.interval + 1e-6) + 1
        key = f"rate:{self.task}:{slot % self._ring}"
        won = self._backend().incr(key, 1, expires=self._expires) == 1
        wait = slot * self.interval - self._clock()
        return won and wait >= 0, max(0.0, wait)


@attrs.define
class Lane:
    """The held jobs of one limited task, oldest first, and when the first one's turn comes."""

    bucket: TokenBucket | None
    shared: SharedLimit | None
    jobs: deque[Job] = attrs.field(factory=deque)
    #: Monotonic time before which the first job is not looked at again.
    due: float = -math.inf
    #: The first job owns the shared slot that begins at ``due``.
    claimed: bool = False
    #: Counter calls failed in a row (the backend is down).
    failures: int = 0


class Throttle:
    """A worker's held jobs of rate-limited tasks, released when their turn comes.

    Used by the worker's consumer thread only. ``lanes`` maps task names to their limits.
    """

    def __init__(self, lanes: dict[str, Lane], clock: Callable[[], float] = time.monotonic) -> None:
        self._lanes = lanes
        self._clock = clock
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def hold(self, job: Job) -> bool:
        """Keep ``job`` if its task is limited (True); False leaves it to the caller."""
        lane = self._lanes.get(job.message.task)
        if lane is None or (lane.bucket is None and lane.shared is None and not lane.jobs):
            return False  # not limited, or no longer (``set_rate``)
        lane.jobs.append(job)
        self._held += 1
        return True

    def release(self, free: int) -> list[Job]:
        """The jobs that may start now, at most ``free`` (the pool's free slots).

        Call it on every dispatch, even with no free slot: a job whose shared slot began while
        the pool was full waits :data:`GRACE` for a pool slot, then gives its slot up and claims
        another once a pool slot is free.
        """
        now = self._clock()
        released: list[Job] = []
        for lane in self._lanes.values():
            while lane.jobs and lane.due <= now:
                if lane.claimed:
                    if now > lane.due + GRACE:
                        lane.claimed = False  # too late: claim another (free slot permitting)
                    elif len(released) < free:
                        lane.claimed = False
                        released.append(self._start(lane))
                    else:
                        break
                elif len(released) >= free:
                    break
                elif lane.bucket is not None and (wait := lane.bucket.wait_time()) > 0:
                    lane.due = now + wait
                elif lane.shared is not None:
                    self._claim(lane)
                else:
                    released.append(self._start(lane))
        return released

    def next_due(self, free: bool) -> float:
        """The monotonic time of the next turn (``inf``: none). Turns that need a free pool
        slot count only when ``free``; a claimed slot's beginning always does, until it has
        begun (then the job waits for a pool slot, which wakes the worker anyway)."""
        now = self._clock()
        return min(
            (
                lane.due
                for lane in self._lanes.values()
                if lane.jobs and (free or (lane.claimed and lane.due > now))
            ),
            default=math.inf,
        )

    def held(self) -> list[Job]:
        """The held jobs, for ``kq inspect reserved``: safe to call from another thread (each
        lane is copied at once, under the GIL)."""
        return [job for lane in list(self._lanes.values()) for job in tuple(lane.jobs)]

    def rates(self) -> dict[str, str]:
        """Each task's per-worker limit, for ``kq inspect stats`` (from any thread)."""
        return {
            task: str(lane.bucket.rate) for task, lane in list(self._lanes.items()) if lane.bucket is not None
        }

    def set_rate(self, task: str, rate: Rate | None) -> None:
        """Change (or, with ``None``, remove) ``task``'s per-worker limit, for ``kq control
        rate_limit``; its held jobs follow the new limit from now on."""
        lane = self._lanes.get(task)
        if lane is None:
            if rate is not None:
                self._lanes[task] = Lane(TokenBucket(rate, self._clock), None)
            return
        lane.bucket = TokenBucket(rate, self._clock) if rate is not None else None
        if not lane.claimed:  # a won global turn stands
            lane.due = -math.inf
        if lane.bucket is None and lane.shared is None and not lane.jobs:
            del self._lanes[task]

    def drain(self) -> list[Job]:
        """Take every held job out (the worker is giving them back)."""
        jobs = [job for lane in self._lanes.values() for job in lane.jobs]
        for lane in self._lanes.values():
            lane.jobs.clear()
            lane.claimed = False
        self._held = 0
        return jobs

    def _start(self, lane: Lane) -> Job:
        if lane.bucket is not None:
            lane.bucket.take()  # there since the turn began: only this lane takes from it
        self._held -= 1
        return lane.jobs.popleft()

    def _claim(self, lane: Lane) -> None:
        assert lane.shared is not None
        try:
            won, wait = lane.shared.claim()
        except (BackendUnavailable, OSError) as exc:
            lane.failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (lane.failures - 1))
            if lane.failures == 1:
                log.error(
                    "kq: global rate limit of %s: result backend unavailable (%s); its "
                    "tasks wait, retrying with backoff",
                    lane.shared.task,
                    exc,
                )
            lane.due = self._clock() + delay
            return
        if lane.failures:
            log.warning(
                "kq: global rate limit of %s: result backend back after %d failed tries",
                lane.shared.task,
                lane.failures,
            )
            lane.failures = 0
        lane.due, lane.claimed = self._clock() + wait, won


def worker_throttle(app: Any) -> Throttle | None:
    """The throttle for a worker of ``app`` (typed ``Any``: the app module imports this one), or
    None when no task has a limit, so that the worker does no rate-limit work at all.

    A global limit needs a result backend with counters; without one this fails now, at worker
    start, naming the task and the installed backends that have them.
    """
    url = app.conf.result_backend  # building the settings registers the built-in tasks first
    lanes: dict[str, Lane] = {}
    for name, task in app.tasks.items():
        local, shared = task.rate_limit, task.global_rate_limit
        if shared is not None:
            _check_counters(app, url, name)
        if local is not None or shared is not None:
            lanes[name] = Lane(
                TokenBucket(local) if local is not None else None,
                SharedLimit(name, shared, lambda: app.backend) if shared is not None else None,
            )
    return Throttle(lanes) if lanes else None


def _check_counters(app: Any, url: str | None, task: str) -> None:
    if url and app.plugins.backend_for(url).capabilities.counters:
        return
    able = ", ".join(
        f"{scheme}://"
        for scheme, provided in app.plugins.backends.items()
        if provided.spec.capabilities.counters
    )
    has = (
        "there is no result backend"
        if not url
        else (f"the result backend {url.partition('://')[0]}:// keeps no counters")
    )
    raise ConfigurationError(
        f"task {task} has a global_rate_limit, which workers share through the result backend's "
        f"counters, but {has}; backends that keep them: {able or 'none installed (try kq-redis)'}"
    )
