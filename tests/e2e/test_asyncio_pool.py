"""Real `kq worker` processes: the asyncio pool, threads' soft time limit, the asyncio client."""

import asyncio
import pathlib
import time
from collections.abc import Iterator

import pytest

from kq.testing.worker import WorkerProcess

pytestmark = pytest.mark.slow

APPS = pathlib.Path(__file__).parent / "apps"


@pytest.fixture
def start_async_worker(tmp_path: pathlib.Path, env: dict[str, str]) -> Iterator:
    """Start ``kq worker -A async_app:app ARGS...`` processes; all are killed at teardown."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        name = f"async{len(started)}"
        worker = WorkerProcess("async_app:app", ["-n", f"{name}@test", *args], env=env,
                               cwd=str(APPS), log_path=str(tmp_path / f"{name}.log"))
        started.append(worker)
        return worker.start(wait_ready=60)

    yield start
    for worker in started:
        worker.__exit__(None, None, None)


def test_a_thousand_awaiting_tasks_run_at_once_on_one_loop(client, start_async_worker):
    total = 1000
    sent = [client.send_task("async_app.nap", [n]) for n in range(total)]
    launched = time.monotonic()
    worker = start_async_worker("-P", "asyncio", "-c", str(total))
    ready = time.monotonic()
    values = [result.get(timeout=300) for result in sent]
    done = time.monotonic()
    print(f"\n{total} tasks awaiting asyncio.sleep(0.5), -P asyncio -c {total}: "
          f"{done - ready:.2f} s from the worker's ready line, {done - launched:.2f} s with its "
          f"start-up (one after another: {total * 0.5:.0f} s)")
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
