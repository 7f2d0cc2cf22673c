"""Dead letters end to end, on SQLite, Redis and RabbitMQ: a real `kq worker` process refuses
messages (an unknown task, bytes that are not JSON, an expired task), then `kq dlq` lists, shows,
replays (to a worker that now knows the task: it runs to SUCCESS) and purges them."""

import json
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kq import App
from kq.cli import cli
from kq.exceptions import TaskRevoked
from kq.transport import Envelope, Transport

BROKERS = ["sqlite", "redis", "rabbitmq"]


@pytest.fixture(params=BROKERS)
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {
        "sqlite": lambda: {},
        "redis": lambda: request.getfixturevalue("redis_broker"),
        "rabbitmq": lambda: request.getfixturevalue("amqp_broker"),
    }[request.param]()


@pytest.fixture
def dlq_cli(env: dict[str, str]):
    """``dlq_cli(*args, input=None)``: run ``kq dlq ARGS`` against the test's broker."""

    def run(*args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, ["dlq", *args], env=env, input=input)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result

    return run


def queue_of(client: App) -> str:
    return client.conf.task_default_queue


def wait_for_depth(transport: Transport, queue: str, expected: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while transport.depth(queue) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert transport.depth(queue) == expected


def test_refused_messages_are_listed_shown_replayed_and_purged(client, start_worker, dlq_cli):
    queue = queue_of(client)
    dlq = f"{queue}.dlq"
    transport = client.new_transport()
    try:
        worker = start_worker("-P", "threads", "-c", "2")  # e2e_app: no retry.add task
        unknown = client.send_task("retry.add", [2, 3])
        garbage_id = uuid.uuid4().hex
        transport.publish(
            queue,
            Envelope(
                body=b"\xff\xfe not json",
                content_type="application/json",
                headers={"id": garbage_id, "task": "e2e.double"},
            ),
        )
        expired = client.send_task("e2e.double", [1], expires=-1)
        fresh = client.send_task("e2e.double", [21])
        assert fresh.get(timeout=30) == 42
        with pytest.raises(TaskRevoked, match="expired"):
            expired.get(timeout=30)
        wait_for_depth(transport, dlq, 3)
        worker.stop()

        listed = json.loads(dlq_cli("list", "--json").output)
        by_id = {letter["task_id"]: letter for letter in listed}
        assert set(by_id) == {unknown.id, garbage_id, expired.id}
        assert by_id[unknown.id]["reason"].startswith("unknown-task: ")
        assert by_id[garbage_id]["reason"].startswith(("decode: ", "malformed: "))
        assert by_id[expired.id]["reason"].startswith("expired: task expired at ")
        for letter in listed:
            assert letter["original_queue"] == queue and letter["queue"] == dlq
            assert letter["rejected_at"]
        assert transport.depth(dlq) == 3  # listing leaves them there

        table = dlq_cli("list").output
        assert f"{dlq}: 3 dead letter(s)" in table and "retry.add" in table

        shown = dlq_cli("show", unknown.id).output
        assert "unknown-task" in shown and "retry.add" in shown
        assert "[2, 3]" in shown or "(2, 3)" in shown  # argsrepr
        assert "not decoded" in shown
        assert dlq_cli("show", "no-such-id").exit_code == 1

        # The worker now knows retry.add: the replayed message runs to SUCCESS.
        start_worker("-P", "threads", "-c", "2", app="retry_app:app")
        replayed = dlq_cli("replay", "--id", unknown.id)
        assert "Replayed 1 message(s)" in replayed.output
        assert unknown.get(timeout=30) == 5 and unknown.state == "SUCCESS"
        remaining = {letter["task_id"] for letter in json.loads(dlq_cli("list", "--json").output)}
        assert remaining == {garbage_id, expired.id}

        refused = dlq_cli("purge", input="n\n")
        assert refused.exit_code == 1 and transport.depth(dlq) == 2
        assert "Purged 2 dead letter(s)" in dlq_cli("purge", "--yes").output
        assert transport.depth(dlq) == 0
        assert "no dead letters" in dlq_cli("list").output
    finally:
        transport.purge(queue)
        transport.purge(dlq)
        transport.close()


@pytest.mark.parametrize("broker_settings", ["sqlite", "redis"], indirect=True)
def test_an_expired_task_is_revoked_and_dead_lettered_with_its_reason(client, start_worker, dlq_cli):
    queue = queue_of(client)
    transport = client.new_transport()
    try:
        start_worker("-P", "threads", "-c", "2")
        expired = client.send_task("e2e.double", [1], expires=-1)
        with pytest.raises(TaskRevoked, match="expired"):
            expired.get(timeout=30)
        assert expired.state == "REVOKED"
        wait_for_depth(transport, f"{queue}.dlq", 1)
        [letter] = json.loads(dlq_cli("list", "--json").output)
        assert letter["task_id"] == expired.id and letter["task"] == "e2e.double"
        assert letter["reason"].startswith("expired: task expired at ")
        assert letter["headers"]["x-kq-original-queue"] == queue
    finally:
        transport.purge(f"{queue}.dlq")
        transport.close()
