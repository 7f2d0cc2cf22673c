"""kq_asyncio.limits on its own: what the body sees, and what the caller gets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kq.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kq_asyncio.limits import limited


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def test_without_limits_the_body_is_simply_awaited() -> None:
    async def body() -> int:
        await asyncio.sleep(0)
        return 42

    assert run(lambda: limited(body(), None, None)) == 42


def test_soft_limit_is_raised_at_the_innermost_await() -> None:
    async def inner() -> None:
        await asyncio.sleep(30)

    async def body() -> str:
        try:
            await inner()
        except SoftTimeLimitExceeded as exc:
            await asyncio.sleep(0.01)
            return str(exc)
        return "never"

    assert run(lambda: limited(body(), 0.05, None)) == "soft time limit (0.05 s) exceeded"


def test_an_uncaught_soft_limit_propagates() -> None:
    async def body() -> None:
        await asyncio.sleep(30)

    with pytest.raises(SoftTimeLimitExceeded):
        run(lambda: limited(body(), 0.05, None))


def test_soft_limit_cancels_the_child_task_the_body_awaits() -> None:
    child_saw: list[str] = []

    async def child() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            child_saw.append("cancelled")
            raise

    async def body() -> str:
        try:
            await asyncio.ensure_future(child())
        except SoftTimeLimitExceeded:
            return "parent cleaned up"
        return "never"

    assert run(lambda: limited(body(), 0.05, None)) == "parent cleaned up"
    assert child_saw == ["cancelled"]


def test_hard_limit_unwinds_the_body_and_raises_time_limit_exceeded() -> None:
    unwound: list[str] = []

    async def body() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            unwound.append("finally")

    with pytest.raises(TimeLimitExceeded, match=r"hard time limit \(0.05 s\)"):
        run(lambda: limited(body(), None, 0.05))
    assert unwound == ["finally"]


def test_a_body_that_swallows_the_hard_cancellation_still_counts_as_stopped() -> None:
    async def body() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "pretending nothing happened"
        return "never"

    with pytest.raises(TimeLimitExceeded):
        run(lambda: limited(body(), None, 0.05))


def test_a_timer_never_fires_after_the_body_ended() -> None:
    async def body() -> str:
        await asyncio.sleep(0.01)
        return "done"

    async def main() -> str:
        value = await limited(body(), 0.05, 0.1)
        await asyncio.sleep(0.2)  # past both limits: must not be interrupted
        return value

    assert run(main) == "done"


def test_other_cancellations_pass_through() -> None:
    async def body() -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        task = asyncio.ensure_future(limited(body(), 10, 20))
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        run(main)
