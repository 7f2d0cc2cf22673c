"""Real `kq worker` processes: the asyncio pool, threads' soft time limit, the asyncio client."""

import asyncio
import functools
import time

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def start_async_worker(start_worker):
    """``start_worker`` for ``async_app:app``; these workers keep the 60 s to get ready they
    always had (30 s is the default)."""
    return functools.partial(start_worker, app="async_app:app", name="async", wait_ready=60)


def test_a_thousand_awaiting_tasks_run_at_once_on_one_loop(client, start_async_worker):
    total = 1000
    sent = [client.send_task("async_app.nap", [n]) for n in range(total)]
    launched = time.monotonic()
    worker = start_async_worker("-P", "asyncio", "-c", str(total))
    ready = time.monotonic()
    values = [result.get(timeout=300) for result in sent]
    done = time.monotonic()
    print(
        f"\n{total} tasks awaiting asyncio.sleep(0.5), -P asyncio -c {total}: "
        f"{done - ready:.2f} s from the worker's ready line, {done - launched:.2f} s with its "
        f"start-up (one after another: {total * 0.5:.0f} s)"
    )
    assert values == [2 * n for n in range(total)]
    assert done - ready < 60, worker.output()
    assert worker.stop() == 0


def test_a_sync_task_in_the_asyncio_pool_runs_in_a_thread(client, start_async_worker):
    worker = start_async_worker("-P", "asyncio", "-c", "4")
    done = client.send_task("async_app.blocking_double", [21]).get(timeout=60)
    assert done["value"] == 42
    assert done["thread"].startswith("kq-asyncio-sync-")
    assert worker.stop() == 0


def test_threads_soft_limit_is_caught_and_the_next_task_on_the_thread_is_unaffected(
    client, start_async_worker
):
    worker = start_async_worker("-P", "threads", "-c", "1")
    begin = time.monotonic()
    assert client.send_task("async_app.cleanup_on_soft_limit").get(timeout=60) == "cleaned up"
    assert time.monotonic() - begin < 30
    after = client.send_task("async_app.spin_in_python", [1.5]).get(timeout=60)
    assert after["rounds"] > 0
    assert after["thread"] == "kq-threads-0"  # -c 1: the very thread the limit was raised in
    assert worker.stop() == 0


def test_an_asyncio_client_sends_and_awaits_a_result(client, start_async_worker):
    @client.task(name="async_app.add")
    async def add(x: int, y: int) -> int:  # the client's declaration of the worker's task
        raise AssertionError("runs in the worker")

    worker = start_async_worker("-P", "asyncio", "-c", "4")

    async def main() -> int:
        result = await add.delay_async(1, 2)
        return await result.get_async(timeout=60)

    assert asyncio.run(main()) == 3
    assert worker.stop() == 0
