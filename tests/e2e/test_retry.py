"""Retries, countdowns and expiry on a real `kq worker` process, on Redis and on RabbitMQ:
autoretry with a growing backoff, retries used up, a manual retry, a retry inside a chain, and a
countdown and an expired task.
"""

import json
import pathlib
import time
from typing import Any

import pytest

from kq import chain, signature
from kq.exceptions import MaxRetriesExceededError, TaskRevoked
from kq.states import FAILURE, PENDING, RETRY, SUCCESS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
APP = "retry_app:app"


@pytest.fixture(params=["redis", "amqp"])
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Redis as broker and result backend under the test's key prefix; or RabbitMQ as broker
    (its native delay carries the countdowns) with results in the test's SQLite file."""
    if request.param == "amqp":
        return request.getfixturevalue("amqp_broker")
    redis_broker = request.getfixturevalue("redis_broker")
    return {
        **redis_broker,
        "result_backend": redis_broker["broker_url"],
        "result_backend_options": redis_broker["broker_transport_options"],
    }


def runs(ledger: pathlib.Path, key: str) -> list[dict[str, Any]]:
    found = [
        json.loads(line)
        for path in sorted(ledger.glob("flaky-*.jsonl"))
        for line in path.read_text().splitlines()
        if line
    ]
    return sorted((run for run in found if run["key"] == key), key=lambda run: run["retries"])


def test_autoretry_with_backoff_runs_three_times_with_growing_delays(client, start_worker, ledger):
    start_worker("-P", "threads", "-c", "2", app=APP)
    result = client.send_task("retry.backoff", ["grow", 2])
    states = set()
    deadline = time.monotonic() + 30
    while not result.ready():  # the client sees RETRY between the runs
        states.add(result.state)
        assert time.monotonic() < deadline, f"still {result.state}"
        time.sleep(0.05)
    assert result.get(timeout=1) == 2
    assert result.state == SUCCESS
    assert RETRY in states, states
    done = runs(ledger, "grow")
    assert [run["retries"] for run in done] == [0, 1, 2]
    assert {run["id"] for run in done} == {result.id}  # every retry keeps the task id
    first, second = (b["at"] - a["at"] for a, b in zip(done, done[1:], strict=False))
    assert 0.9 <= first < 1.9, first  # backoff 1 s, then 2 s (no jitter)
    assert 1.9 <= second < 3.5, second
    assert second > first


def test_autoretry_used_up_fails_with_the_original_exception(client, start_worker, ledger):
    start_worker("-P", "threads", "-c", "2", app=APP)
    result = client.send_task("retry.once", ["spent", 5])
    with pytest.raises(ValueError, match="failure 2 of 5"):
        result.get(timeout=30)
    assert result.state == FAILURE
    assert [run["retries"] for run in runs(ledger, "spent")] == [0, 1]


def test_manual_retry_ends_with_max_retries_exceeded(client, start_worker, ledger):
    start_worker("-P", "prefork", "-c", "2", app=APP)  # retries sent from a pool child
    result = client.send_task("retry.manual", ["by-hand"])
    with pytest.raises(MaxRetriesExceededError):
        result.get(timeout=30)
    assert [run["retries"] for run in runs(ledger, "by-hand")] == [0, 1, 2]


def test_a_chain_goes_on_after_its_first_task_retried(client, start_worker, ledger):
    start_worker("-P", "threads", "-c", "2", app=APP)
    workflow = chain(
        signature("retry.backoff", ["chained", 1], app=client), signature("retry.add", [10], app=client)
    )
    assert workflow.apply_async().get(timeout=30) == 11
    assert [run["retries"] for run in runs(ledger, "chained")] == [0, 1]


def test_countdown_runs_after_its_delay_and_expired_tasks_are_revoked(client, start_worker):
    start_worker("-P", "threads", "-c", "2", app=APP)
    sent_at = time.time()
    later = client.send_task("retry.add", [1, 2], countdown=2)
    expired = client.send_task("retry.add", [3, 4], countdown=2, expires=1)
    time.sleep(1)
    assert later.state == PENDING
    assert later.get(timeout=30) == 3
    assert later.date_done.timestamp() - sent_at >= 1.9
    with pytest.raises(TaskRevoked, match="expired"):
        expired.get(timeout=30)
    assert expired.state == "REVOKED"


def test_request_context_in_a_worker_process(client, start_worker):
    start_worker("-P", "threads", "-c", "2", app=APP)
    result = client.send_task("retry.context", [1, 2], {"k": 3}, countdown=0.5, priority=5)
    seen = result.get(timeout=30)
    assert seen["id"] == result.id == seen["root_id"] and seen["parent_id"] is None
    assert (seen["args"], seen["kwargs"], seen["retries"]) == ([1, 2], {"k": 3}, 0)
    assert seen["eta"] is not None and seen["hostname"] == "w0@test"
    assert seen["delivery_info"] == {
        "queue": client.conf.task_default_queue,
        "redelivered": False,
        "priority": 5,
    }
    assert (seen["current_task"], seen["current_app"]) == ("retry.context", "retry")
