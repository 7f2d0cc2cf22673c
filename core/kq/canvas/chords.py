"""Chords: deciding, exactly once, whether a chord's body runs or the chord fails.

Each header task carries the body (with ``chord_size``) in its message and the header's group
id. Before any header task is sent, the member ids are recorded under the group id
(:func:`kq.result.save_groups`). Then, on a backend with counters (``capabilities.counters``):

- a header task that succeeds adds one to the chord's count; the one that brings it to
  ``chord_size`` reads every header result in one ``get_many`` and, if all are ready, claims
  the chord (a second counter that only one caller can take from 0 to 1);
- a header task that fails claims the chord at once.

Whoever claims it settles it: the body runs with the header's values in header order, or the
body's result is stored as FAILURE with the failing task's exception. No task polls, the count
is deleted when settled, and both counters expire with the results. The claim counter is left to
expire on its own: a header task delivered twice (at-least-once) then finds the chord taken
instead of settling it again.

A backend without counters gets :func:`outcome` run by the ``kq.chord_unlock`` task, which
re-checks with backoff until the header is done or its results would have expired.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from ..config import safe_url
from ..exceptions import BackendUnavailable, KQError
from ..result import group_members, read_many
from ..states import EXCEPTION_STATES, READY_STATES
from .wire import Call, Cause, Step

#: Counter names (the backend keeps them apart from results).
COUNT, CLAIM = "kq.chord.{}", "kq.chord.{}.settled"
#: The unlock task's first and longest delay between checks (seconds).
UNLOCK_FIRST, UNLOCK_MAX = 0.05, 2.0
#: How long the unlock task waits when results never expire (``result_expires=None``).
UNLOCK_DEFAULT_DEADLINE = 86400.0
UNLOCK_TASK = "kq.chord_unlock"


@attrs.frozen
class Settled:
    """How a chord ended: the header's values in order, or the failure that stopped it."""

    body: Mapping[str, Any]
    values: list[Any] | None = None
    cause: Cause | None = None


def check_backend(app: Any) -> bool:
    """Fail now if this app's results cannot carry a chord; return whether it counts natively."""
    if not app.conf.result_backend:
        raise KQError("chords need a result backend: the body reads every header result")
    capabilities = app.backend.capabilities
    if capabilities.reply_to:
        raise KQError(
            f"chords need results every worker can read; {safe_url(app.conf.result_backend)} "
            f"sends each result back to its caller only"
        )
    counts: bool = capabilities.counters
    return counts


def chord_size(body: Mapping[str, Any]) -> int | None:
    """The header's size, as the body carries it; ``None`` if it does not (a Celery client's)."""
    size = body.get("chord_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return None
    return size


def _foreign(group_id: str, body: Mapping[str, Any], what: str) -> Settled:
    error = KQError(
        f"chord {group_id}: {what} (expired, or the chord was not sent by kq: kq "
        f"workers settle only chords sent by kq)"
    )
    return Settled(body, cause=Cause.of_exception(group_id, error))


def _incr(app: Any, key: str) -> tuple[int, int]:
    """``backend.incr``, retried through a backend outage as results are stored
    (``result_store_timeout``): a lost count would leave the chord waiting. Returns the new value
    and how many failed attempts came before it (each may have counted: its reply was lost)."""
    deadline = time.monotonic() + app.conf.result_store_timeout
    delay, uncertain = 0.1, 0
    while True:
        try:
            return app.backend.incr(key, 1, app.conf.result_expires), uncertain
        except (BackendUnavailable, OSError):
            if time.monotonic() + delay > deadline:
                raise
            uncertain += 1
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def part_succeeded(app: Any, step: Step) -> Settled | None:
    """A header task succeeded: count it; settle the chord if the header is complete."""
    assert step.chord is not None and step.group_id is not None
    if not app.backend.capabilities.counters:
        return None  # the unlock task is watching this chord
    size = chord_size(step.chord)
    if size is None:
        return _claim(app, step.group_id, _foreign(step.group_id, step.chord, "its body has no chord_size"))
    if _incr(app, COUNT.format(step.group_id))[0] < size:  # over-counting only settles later
        return None
    found = outcome(app, step.group_id, step.chord)
    return None if found is None else _claim(app, step.group_id, found)


def part_failed(app: Any, step: Step, cause: Cause) -> Settled | None:
    """A header task failed: the chord fails, if no one settled it first."""
    assert step.chord is not None and step.group_id is not None
    if not app.backend.capabilities.counters:
        return None
    return _claim(app, step.group_id, Settled(step.chord, cause=cause))


def _claim(app: Any, group_id: str, settled: Settled) -> Settled | None:
    value, uncertain = _incr(app, CLAIM.format(group_id))
    # An attempt whose reply was lost may have taken the 1 itself, and then this caller owns the
    # chord all the same: settling twice (a rare duplicate body) is better than never settling.
    if value > 1 + uncertain:
        return None
    app.backend.delete_counter(COUNT.format(group_id))
    return settled


def outcome(app: Any, group_id: str, body: Mapping[str, Any]) -> Settled | None:
    """The chord's outcome if it has one now: failed as soon as one header task failed,
    complete when every one succeeded; ``None`` while some are still running."""
    ids = group_members(app, group_id)
    if ids is None or len(ids) != chord_size(body):
        return _foreign(group_id, body, "its header's member list is missing or wrong")
    values, pending = [], False
    for meta in read_many(app, ids):
        if meta is None or meta.state not in READY_STATES:
            pending = True
        elif meta.state in EXCEPTION_STATES:
            return Settled(body, cause=Cause.of_meta(meta))
        else:
            values.append(meta.result)
    return None if pending else Settled(body, values=values)


def unlock_call(app: Any, group_id: str, body: Mapping[str, Any]) -> Call:
    """The first ``kq.chord_unlock`` call for a chord on a backend without counters. It gives up
    when the header's results would have expired (``result_expires``), so it cannot wait forever."""
    expires = app.conf.result_expires or UNLOCK_DEFAULT_DEADLINE
    return Call(
        UNLOCK_TASK,
        (group_id, dict(body), time.time() + expires, UNLOCK_FIRST),
        {},
        {"countdown": UNLOCK_FIRST, "ignore_result": True},
    )


def unlock_timed_out(group_id: str, body: Mapping[str, Any], deadline: float) -> Settled:
    error = KQError(
        f"chord {group_id}: the header did not finish before its results expire "
        f"(deadline {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(deadline))} UTC)"
    )
    return Settled(body, cause=Cause.of_exception(group_id, error))
