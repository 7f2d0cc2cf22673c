"""Revoking on real brokers (Redis and RabbitMQ) with real `kq worker` processes: a revoked task
never runs, whether the worker already holds its message, meets it later, or starts after the
revoke; its state is REVOKED."""

import time
from collections.abc import Callable
from typing import Any

import pytest

from kq import App
from kq.exceptions import TaskRevoked
from kq.states import REVOKED, SUCCESS

pytestmark = pytest.mark.slow


@pytest.fixture(params=["redis", "amqp"])
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue(f"{request.param}_broker")


def drained(client: App, timeout: float = 60) -> None:
    """Send one more task and wait for it: a worker with concurrency 1 has met every message
    sent before it by then."""
    assert client.send_task("e2e.double", (21,)).get(timeout=timeout) == 42


def test_a_revoked_prefetched_task_never_runs(client: App, start_worker: Callable, ran) -> None:
    """The worker holds the message (reserved behind a slow task) when the revoke arrives."""
    start_worker("-c", "1", "--prefetch-multiplier", "4")
    slow = client.send_task("e2e.slow", (2.0,))
    victim = client.send_task("e2e.double", (1,))
    spared = client.send_task("e2e.double", (2,))
    victim.revoke()
    assert slow.get(timeout=60) == 2.0
    assert spared.get(timeout=60) == 4
    drained(client)
    assert victim.id not in ran("ran")
    assert spared.id in ran("ran")
    assert victim.state == REVOKED
    with pytest.raises(TaskRevoked):
        victim.get(timeout=5)


def test_a_revoked_delayed_task_never_runs(client: App, start_worker: Callable, ran) -> None:
    start_worker("-c", "1")
    victim = client.send_task("e2e.double", (1,), countdown=2)
    client.revoke([victim.id])
    later = client.send_task("e2e.double", (3,), countdown=3)
    assert later.get(timeout=60) == 6
    assert victim.id not in ran("ran")
    assert victim.state == REVOKED


def test_a_revoke_made_while_no_worker_runs_holds_for_a_worker_started_later(
    client: App, start_worker: Callable, ran
) -> None:
    """Revoke survives a restart: stop the worker, revoke, start a new worker process."""
    first = start_worker("-c", "1")
    drained(client)
    first.stop()
    victim = client.send_task("e2e.double", (1,))
    victim.revoke()
    spared = client.send_task("e2e.double", (2,))
    start_worker("-c", "1")
    assert spared.get(timeout=60) == 4
    assert victim.id not in ran("ran")
    assert client.AsyncResult(victim.id).state == REVOKED


def test_revoking_a_finished_task_keeps_its_result(client: App, start_worker: Callable) -> None:
    start_worker("-c", "1")
    done = client.send_task("e2e.double", (5,))
    assert done.get(timeout=60) == 10
    client.AsyncResult(done.id).revoke()
    assert client.AsyncResult(done.id).state == SUCCESS


def test_terminate_stops_a_running_task_in_the_prefork_pool(client: App, start_worker: Callable, ran) -> None:
    start_worker("-P", "prefork", "-c", "1")
    victim = client.send_task("e2e.slow", (600.0,))
    deadline = time.monotonic() + 30
    while victim.id not in ran("started"):
        assert time.monotonic() < deadline, "the slow task never started"
        time.sleep(0.05)
    victim.revoke(terminate=True, signal="SIGKILL")
    with pytest.raises(TaskRevoked):
        victim.get(timeout=30)
    assert victim.state == REVOKED
    drained(client, timeout=30)  # its only slot is free again: the task was stopped
    assert victim.id not in ran("finished")
