"""Time limits for a coroutine running as part of an asyncio task.

Soft: ``SoftTimeLimitExceeded`` must appear *inside* the task body, at the ``await`` it is
suspended in, so that ``except SoftTimeLimitExceeded`` there can clean up (and await while
doing so). asyncio can only deliver ``CancelledError`` to a suspended task, so the soft timer
cancels the task, and :func:`_interruptible`, which stands between the task and the body,
turns that one cancellation into ``SoftTimeLimitExceeded`` as it passes it down, then takes
the cancellation back (``Task.uncancel``) so the body's own ``asyncio.timeout`` and task
groups are not confused by it.

Hard: the timer cancels the task and the cancellation goes through untouched, unwinding the
body's ``try``/``finally`` blocks; :func:`limited` then raises ``TimeLimitExceeded``. A body
that swallows the cancellation keeps running until it returns, and still counts as stopped.

Both timers are ``loop.call_later`` handles in the loop's own heap, armed only while the body
runs; a body that blocks the loop (a long computation without ``await``) blocks the timers too.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from kq.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

T = TypeVar("T")


class _Limits:
    """One run's limits and what its timers did."""

    __slots__ = ("soft", "hard", "soft_pending", "hard_fired")

    def __init__(self, soft: float | None, hard: float | None) -> None:
        self.soft = soft
        self.hard = hard
        self.soft_pending = False  # cancelled by the soft timer; not yet turned into the error
        self.hard_fired = False

    def fire_soft(self, task: asyncio.Task[Any]) -> None:
        if not self.hard_fired and task.cancel(f"soft time limit ({self.soft} s) exceeded"):
            self.soft_pending = True

    def fire_hard(self, task: asyncio.Task[Any]) -> None:
        self.hard_fired = True
        self.soft_pending = False
        task.cancel(f"hard time limit ({self.hard} s) exceeded")

    def translate(self, exc: BaseException) -> BaseException:
        """What to throw into the body for ``exc``, thrown into the task."""
        if not (self.soft_pending and isinstance(exc, asyncio.CancelledError)):
            return exc
        self.soft_pending = False
        _uncancel(asyncio.current_task())
        return SoftTimeLimitExceeded(f"soft time limit ({self.soft} s) exceeded")


async def limited(body: Coroutine[Any, Any, T], soft: float | None, hard: float | None) -> T:
    """Await ``body`` in the current task under its limits (``None``: none).

    Raises ``TimeLimitExceeded`` when the hard limit stopped it. Other cancellations of the
    task (the pool abandoning it) pass through as ``CancelledError``.
    """
    if soft is None and hard is None:
        return await body
    task = asyncio.current_task()
    assert task is not None, "limited() runs inside an asyncio task"
    loop = asyncio.get_running_loop()
    limits = _Limits(soft, hard)
    timers = []
    if soft is not None:
        timers.append(loop.call_later(soft, limits.fire_soft, task))
    if hard is not None:
        timers.append(loop.call_later(hard, limits.fire_hard, task))
    try:
        value = await _interruptible(body, limits)
    except asyncio.CancelledError:
        if not limits.hard_fired:
            raise
    finally:
        for timer in timers:
            timer.cancel()
    if limits.hard_fired:
        _uncancel(task)
        raise TimeLimitExceeded(f"hard time limit ({hard} s) exceeded")
    return value


@types.coroutine
def _interruptible(body: Coroutine[Any, Any, T], limits: _Limits) -> Generator[Any, Any, T]:
    """``await body``, spelled out so that what is thrown in can be changed on its way down.

    ``yield from`` would pass a thrown exception straight to the innermost frame; this loop
    does the same, except for the cancellation the soft timer caused (:meth:`_Limits.translate`).
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = body.send(value) if error is None else body.throw(error)
        except StopIteration as stop:
            result: T = stop.value  # what the coroutine returned
            return result
        value, error = None, None
        try:
            value = yield step
        except GeneratorExit:
            body.close()
            raise
        except BaseException as exc:  # thrown into the task; the body decides what it means
            error = limits.translate(exc)


def _uncancel(task: asyncio.Task[Any] | None) -> None:
    """Take back one cancellation request (Python 3.11+; 3.10 does not count them)."""
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()
