"""Fair dispatch on Redis: with ``--prefetch-multiplier 0`` a worker fetches only for a free pool
slot, so a long task never holds short ones hostage (Celery issues #6500 and #1933).

Each test publishes one 5 s task and then 100 short ones while no worker runs, starts the
worker(s), and checks from the tasks' own finish times that every short task finished while the
long one was still running. A last test shows that a message held for its ETA does not take
the place of one that can run now.
"""

import json
import pathlib
import time
import uuid
from typing import Any

import pytest

from kq import App, signature
from kq.testing.worker import worker_thread

pytestmark = pytest.mark.slow

LONG, SHORTS = 5.0, 100


@pytest.fixture
def broker_settings(redis_broker: dict[str, Any]) -> dict[str, Any]:
    return redis_broker


def runs(ledger: pathlib.Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(ledger.glob("order-*.jsonl"))
        for line in path.read_text().splitlines()
        if line
    ]


def publish_long_then_short(client) -> None:
    client.send_task("order.sleep", ["long", LONG])
    client.send_many([signature("order.sleep", ["short", 0.01]) for _ in range(SHORTS)])


def wait_for_all(ledger: pathlib.Path, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(done := runs(ledger)) < 1 + SHORTS:
        assert time.monotonic() < deadline, f"only {len(done)} of {1 + SHORTS} tasks ran"
        time.sleep(0.2)
    return done


def assert_shorts_finished_first(done: list[dict[str, Any]]) -> None:
    (long,) = [run for run in done if run["label"] == "long"]
    shorts = [run for run in done if run["label"] == "short"]
    assert len(shorts) == SHORTS
    late = [run for run in shorts if run["finished"] > long["finished"]]
    assert not late, f"{len(late)} short tasks finished after the long one"
    assert min(run["started"] for run in shorts) < long["started"] + LONG


def test_one_worker_two_slots_runs_the_short_tasks_beside_the_long_one(client, start_worker, ledger):
    publish_long_then_short(client)
    worker = start_worker("-P", "threads", "-c", "2", "--prefetch-multiplier", "0", app="order_app:app")
    assert_shorts_finished_first(wait_for_all(ledger, 60))
    assert worker.stop() == 0, worker.output()


def test_the_worker_running_the_long_task_holds_no_short_one(client, start_worker, ledger):
    """Two one-slot prefork workers: the one that takes the long task reserves nothing else, so
    the other runs every short task (with the default multiplier of 4 it would hold 4 of them
    until the long one ends; see docs/workers.md)."""
    publish_long_then_short(client)
    workers = [
        start_worker("-P", "prefork", "-c", "1", "--prefetch-multiplier", "0", app="order_app:app")
        for _ in range(2)
    ]
    assert_shorts_finished_first(wait_for_all(ledger, 60))
    for worker in workers:
        assert worker.stop() == 0, worker.output()


def test_a_message_held_for_its_eta_takes_no_slot() -> None:
    """On a broker without native delay (memory) the worker holds an early message itself; with
    one slot and no prefetch that message must not keep the worker from fetching the next."""
    app = App(
        "eta-fair",
        broker="memory://",
        backend="memory://",
        task_default_queue=f"eta-fair-{uuid.uuid4().hex[:8]}",
    )

    @app.task(name="fair.label")
    def label(text: str) -> str:
        return text

    with worker_thread(app, pool="threads", concurrency=1, prefetch_multiplier=0) as worker:
        later = label.apply_async(("later",), countdown=60)
        deadline = time.monotonic() + 10
        while worker.reserved_count < 1:
            assert time.monotonic() < deadline, "the worker did not fetch the delayed message"
            time.sleep(0.02)
        assert label.delay("now").get(timeout=10) == "now"
        assert later.state == "PENDING"
