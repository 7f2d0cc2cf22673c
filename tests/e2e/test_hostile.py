"""A pickle payload put on the broker raw, past kq's publish API, as an attacker who can write to
the broker would: a real `kq worker` with the default configuration (``accept_content`` json)
refuses it before decoding, dead-letters it to ``<queue>.dlq`` and runs no code. The payload
creates a file when unpickled; the file does not exist afterwards. A good task sent after it
runs to SUCCESS: the worker is unharmed. On Redis, RabbitMQ and the SQLite default broker.
"""

import base64
import json
import pathlib
import pickle
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import amqp
import pytest
import redis

from kq import App
from kq.testing.servers import require
from kq.transport import REJECT_REASON_HEADER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
PICKLE = "application/x-python-serialize"


@pytest.fixture
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    kind = request.param
    return {} if kind == "sqlite" else request.getfixturevalue(f"{kind}_broker")


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing is the code having run."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def hostile_payload(path: pathlib.Path) -> bytes:
    payload = pickle.dumps(CreatesFile(path))
    assert b"CreatesFile" not in payload  # loads anywhere: it names only builtins.open
    return payload


def task_headers(task_id: str) -> dict[str, Any]:
    """Valid protocol 2 headers for a task the worker has registered."""
    return {
        "lang": "py",
        "task": "e2e.add",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "(1, 2)",
        "kwargsrepr": "{}",
        "origin": "attacker@test",
    }


def put_on_redis(settings: dict[str, Any], queue: str, payload: bytes, headers: dict) -> None:
    """LPUSH the JSON envelope kombu's (and kq's) Redis transport reads."""
    message = {
        "body": base64.b64encode(payload).decode(),
        "content-encoding": "binary",
        "content-type": PICKLE,
        "headers": headers,
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    prefix = settings["broker_transport_options"]["global_keyprefix"]
    client = redis.Redis(port=6379, db=15)
    try:
        client.lpush(f"{prefix}{queue}", json.dumps(message))
    finally:
        client.close()


def put_on_rabbitmq(settings: dict[str, Any], queue: str, payload: bytes, headers: dict) -> None:
    """basic.publish with py-amqp to the default exchange, once the worker has declared the
    queue (publishing to a missing queue would drop the message)."""
    host, port = require("rabbitmq")
    connection = amqp.Connection(f"{host}:{port}", userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        deadline = time.monotonic() + 30
        while True:
            try:
                channel.queue_declare(queue, passive=True)
                break
            except amqp.exceptions.NotFound:
                assert time.monotonic() < deadline, f"the worker never declared {queue}"
                channel = connection.channel()  # a failed passive declare closes the channel
                time.sleep(0.1)
        channel.basic_publish(
            amqp.Message(
                payload,
                content_type=PICKLE,
                content_encoding="binary",
                application_headers=headers,
                delivery_mode=2,
            ),
            exchange="",
            routing_key=queue,
        )
    finally:
        connection.close()


def put_on_sqlite(db_url: str, queue: str, payload: bytes, headers: dict) -> None:
    """INSERT the row kq-sqlite's transport reads (the worker has created the table)."""
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as db:
        db.execute(
            "INSERT INTO kq_messages (queue, rank, ready, available_at, body, content_type,"
            " content_encoding, headers) VALUES (?, 0, 1, ?, ?, ?, 'binary', ?)",
            (queue, time.time(), payload, PICKLE, json.dumps(headers)),
        )
    db.close()


def dead_letters(client: App, queue: str, wanted: int) -> list[Any]:
    """The messages in ``<queue>.dlq``, read with a kq transport, once ``wanted`` are there."""
    transport = client.new_transport()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < wanted and time.monotonic() < deadline:
            got += transport.fetch([f"{queue}.dlq"], wanted - len(got), 1.0)
        transport.ack(got)
    finally:
        transport.close()
    return got


@pytest.mark.parametrize("broker_settings", ["redis", "amqp", "sqlite"], indirect=True)
def test_a_raw_pickle_payload_is_dead_lettered_unread_and_runs_nothing(
    request, client, start_worker, broker_settings, db_url, tmp_path
):
    target, control = tmp_path / "pwned", tmp_path / "control"
    pickle.loads(hostile_payload(control))  # noqa: S301 - the proof that the payload is live
    assert control.exists()
    put: Callable[..., None] = {
        "redis": lambda *a: put_on_redis(broker_settings, *a),
        "amqp": lambda *a: put_on_rabbitmq(broker_settings, *a),
        "sqlite": lambda *a: put_on_sqlite(db_url, *a),
    }[request.node.callspec.params["broker_settings"]]
    queue = client.conf.task_default_queue
    assert client.conf.accept_content == ("json",)  # the default configuration
    worker = start_worker("-P", "threads", "-c", "2")
    task_id = f"hostile-{uuid.uuid4().hex[:8]}"

    put(queue, hostile_payload(target), task_headers(task_id))

    [dead] = dead_letters(client, queue, 1)
    assert dead.envelope.headers["id"] == task_id
    assert dead.envelope.content_type == PICKLE
    assert dead.envelope.body == hostile_payload(target)  # kept whole, for whoever inspects it
    if REJECT_REASON_HEADER in dead.envelope.headers:  # kq's own dead-lettering says why
        assert PICKLE in dead.envelope.headers[REJECT_REASON_HEADER]
    assert client.send_task("e2e.add", [20, 22]).get(timeout=30) == 42
    assert not target.exists()
    assert client.AsyncResult(task_id).state == "PENDING"  # never ran, never stored
    log = worker.output()
    assert f"rejected message {task_id} from queue {queue}" in log
    assert worker.stop() == 0, log
