"""Real tasks through a real worker (in a thread) on the asyncio pool."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from kq import App
from kq.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kq.states import FAILURE
from kq.testing.worker import worker_thread


def spin(seconds: float) -> None:
    """Compute in Python: a thread's asynchronous exception arrives within a bytecode."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += 1


def test_async_tasks_await_side_by_side_on_the_loop_thread(kq_app: App) -> None:
    running = 0
    peak = 0

    @kq_app.task(name="t.nap", bind=True)
    async def nap(self, n: int) -> tuple[int, str, str]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.3)
        running -= 1
        # After the await, each coroutine still sees its own request.
        return n, self.request.id, threading.current_thread().name

    with worker_thread(kq_app, pool="asyncio", concurrency=50):
        begin = time.monotonic()
        sent = [nap.delay(n) for n in range(50)]
        results = [r.get(timeout=60) for r in sent]
        elapsed = time.monotonic() - begin
    assert [n for n, _, _ in results] == list(range(50))
    assert [task_id for _, task_id, _ in results] == [r.id for r in sent]
    assert {thread for _, _, thread in results} == {"kq-asyncio-loop"}
    assert peak > 10, f"at most {peak} ran at once"
    assert elapsed < 15 * 0.3, f"50 naps of 0.3 s took {elapsed:.1f} s"


def test_a_sync_task_runs_in_a_thread_and_does_not_block_coroutines(kq_app: App) -> None:
    @kq_app.task(name="t.blocking")
    def blocking(seconds: float) -> str:
        time.sleep(seconds)
        return threading.current_thread().name

    @kq_app.task(name="t.quick")
    async def quick() -> str:
        return "quick"

    with worker_thread(kq_app, pool="asyncio", concurrency=4):
        slow = blocking.delay(2.0)
        time.sleep(0.2)
        begin = time.monotonic()
        assert quick.delay().get(timeout=30) == "quick"
        assert time.monotonic() - begin < 1.5, "a sync task blocked the loop"
        assert slow.get(timeout=30).startswith("kq-asyncio-sync-")


def test_soft_limit_is_raised_at_the_await_and_the_task_can_clean_up(kq_app: App) -> None:
    @kq_app.task(name="t.patient", soft_time_limit=0.3)
    async def patient() -> str:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded:
            await asyncio.sleep(0.05)  # cleaning up may await
            return "cleaned up"
        return "never"

    @kq_app.task(name="t.careless", soft_time_limit=0.3)
    async def careless() -> None:
        await asyncio.sleep(30)

    with worker_thread(kq_app, pool="asyncio", concurrency=4):
        begin = time.monotonic()
        assert patient.delay().get(timeout=30) == "cleaned up"
        assert time.monotonic() - begin < 10
        result = careless.delay()
        with pytest.raises(SoftTimeLimitExceeded, match=r"soft time limit \(0.3 s\)"):
            result.get(timeout=30)
        assert result.state == FAILURE


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_after_a_soft_limit_the_task_is_not_left_cancelling(kq_app: App) -> None:
    """asyncio.timeout tells its own cancellation from others by the task's cancel count."""

    @kq_app.task(name="t.timeout_after_soft", soft_time_limit=0.2)
    async def timeout_after_soft() -> str:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded:
            pass
        try:
            async with asyncio.timeout(0.1):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timeout still works"
        return "never"

    with worker_thread(kq_app, pool="asyncio", concurrency=2):
        assert timeout_after_soft.delay().get(timeout=30) == "timeout still works"


def test_hard_limit_cancels_the_coroutine_and_frees_its_slot(kq_app: App) -> None:
    unwound: list[str] = []

    @kq_app.task(name="t.stuck", time_limit=0.5)
    async def stuck() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            unwound.append("finally ran")

    @kq_app.task(name="t.stubborn", soft_time_limit=0.2, time_limit=0.6)
    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded:
            await asyncio.sleep(30)  # ignores the soft limit: the hard one ends it

    @kq_app.task(name="t.echo")
    async def echo(value: str) -> str:
        return value

    with worker_thread(kq_app, pool="asyncio", concurrency=1):
        begin = time.monotonic()
        for result in (stuck.delay(), stubborn.delay()):
            with pytest.raises(TimeLimitExceeded, match="hard time limit"):
                result.get(timeout=30)
        assert echo.delay("slot is back").get(timeout=30) == "slot is back"
        assert time.monotonic() - begin < 20
    assert unwound == ["finally ran"]


def test_sync_tasks_get_their_limits_where_a_thread_allows(kq_app: App) -> None:
    @kq_app.task(name="t.sync_patient", soft_time_limit=0.3)
    def sync_patient() -> str:
        try:
            spin(30)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "never"

    @kq_app.task(name="t.sync_stuck", time_limit=0.5)
    def sync_stuck() -> str:
        try:
            spin(30)
        except Exception:  # the hard limit is not an Exception: this does not stop it
            return "swallowed"
        return "never"

    @kq_app.task(name="t.sync_echo")
    def sync_echo(value: str) -> str:
        return value

    with worker_thread(kq_app, pool="asyncio", concurrency=1):
        begin = time.monotonic()
        assert sync_patient.delay().get(timeout=30) == "cleaned up"
        with pytest.raises(TimeLimitExceeded, match=r"hard time limit \(0.5 s\)"):
            sync_stuck.delay().get(timeout=30)
        assert sync_echo.delay("slot is back").get(timeout=30) == "slot is back"
        assert time.monotonic() - begin < 20


def test_soft_shutdown_timeout_cancels_running_coroutines(kq_app: App) -> None:
    seen: list[str] = []

    @kq_app.task(name="t.long")
    async def long() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    kq_app.override(worker_soft_shutdown_timeout=0.5)
    begin = time.monotonic()
    with worker_thread(kq_app, pool="asyncio", concurrency=2) as worker:
        long.delay()
        deadline = time.monotonic() + 30
        while worker.running_count < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # let the coroutine start
    assert time.monotonic() - begin < 20
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["cancelled"]


def test_a_task_that_is_cancelled_from_inside_fails_and_gives_its_slot_back(kq_app: App) -> None:
    @kq_app.task(name="t.self_cancelling")
    async def self_cancelling() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)

    @kq_app.task(name="t.after")
    async def after() -> str:
        return "slot is back"

    with worker_thread(kq_app, pool="asyncio", concurrency=1):
        result = self_cancelling.delay()
        with pytest.raises(RuntimeError, match="cancelled before it ended"):
            result.get(timeout=30)
        assert after.delay().get(timeout=30) == "slot is back"
