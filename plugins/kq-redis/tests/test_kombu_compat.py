"""kq and kombu (Celery's messaging library) share one Redis: each reads what the other wrote,
messages, priorities and unacked leases alike. kombu runs for real here, in this process or in
a child process that dies holding a message."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import kombu
import pytest
import redis

from kq.testing.contracts.transport import drain
from kq.transport import Envelope
from kq_redis.transport import RedisTransport
from kq_redis.wire import SEP

HEADERS = {
    "lang": "py",
    "task": "proj.add",
    "id": "7b1e",
    "retries": 0,
    "eta": None,
    "timelimit": [None, None],
    "argsrepr": "(1, 2)",
    "text": "żółw ✓",
}
BODY = b'[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'


@pytest.fixture
def kq(redis_url: str, prefix: str) -> Iterator[RedisTransport]:
    transport = RedisTransport(redis_url, {"global_keyprefix": prefix, "visibility_timeout": 1})
    yield transport
    transport.close()


@pytest.fixture
def connection(redis_url: str, prefix: str) -> Iterator[kombu.Connection]:
    with kombu.Connection(
        redis_url, transport_options={"global_keyprefix": prefix, "visibility_timeout": 1}
    ) as conn:
        yield conn


def test_kombu_reads_what_kq_publishes(
    kq: RedisTransport, connection: kombu.Connection, raw: redis.Redis, prefix: str
) -> None:
    kq.publish(
        "work",
        Envelope(
            BODY,
            "application/json",
            "utf-8",
            HEADERS,
            priority=9,
            correlation_id="7b1e",
            reply_to="client-replies",
        ),
    )
    [stored] = raw.lrange(f"{prefix}work", 0, -1)  # kq's 9 is kombu's 0: the queue's own list
    message = json.loads(stored)
    assert set(message) == {"body", "content-encoding", "content-type", "headers", "properties"}
    assert base64.b64decode(message["body"]) == BODY
    properties = message["properties"]
    assert properties["delivery_info"] == {"exchange": "", "routing_key": "work"}
    assert (properties["priority"], properties["body_encoding"], properties["delivery_mode"]) == (
        0,
        "base64",
        2,
    )
    queue = connection.SimpleQueue("work")
    try:
        got = queue.get(timeout=5)
        assert got.body == BODY and got.headers == HEADERS
        assert (got.content_type, got.content_encoding) == ("application/json", "utf-8")
        assert got.properties["correlation_id"] == "7b1e"
        assert got.properties["reply_to"] == "client-replies"
        assert got.decode()[0] == [1, 2]
        got.ack()
    finally:
        queue.close()


def test_kq_reads_what_kombu_publishes_with_redis_priorities(
    kq: RedisTransport, connection: kombu.Connection, raw: redis.Redis, prefix: str
) -> None:
    producer = connection.Producer()
    for priority in (9, 0, 5):  # on Redis kombu serves 0 first
        producer.publish(
            BODY,
            routing_key="work",
            exchange="",
            content_type="application/json",
            content_encoding="utf-8",
            headers={**HEADERS, "id": str(priority)},
            correlation_id=str(priority),
            reply_to="r",
            priority=priority,
            declare=[kombu.Queue("work")],
        )
    assert raw.llen(f"{prefix}work{SEP}9") == raw.llen(f"{prefix}work{SEP}3") == 1
    got = drain(kq, ["work"], 3)
    assert [d.envelope.headers["id"] for d in got] == ["0", "5", "9"]
    assert [d.envelope.priority for d in got] == [9, 4, 0]
    first = got[0].envelope
    assert first.body == BODY and first.content_type == "application/json"
    assert (first.correlation_id, first.reply_to, first.content_encoding) == ("0", "r", "utf-8")
    assert not got[0].redelivered


def test_kq_reads_a_message_pushed_by_hand_in_kombus_layout(
    kq: RedisTransport, raw: redis.Redis, prefix: str
) -> None:
    message = {
        "body": base64.b64encode(BODY).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": HEADERS,
        "properties": {
            "correlation_id": "7b1e",
            "reply_to": "r",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "work"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "d0f1b2c3",
        },
    }
    raw.lpush(f"{prefix}work", json.dumps(message))
    [got] = kq.fetch(["work"], 10, 1.0)
    assert got.envelope == Envelope(BODY, "application/json", "utf-8", HEADERS, 9, "7b1e", "r")


def test_kombu_gives_back_a_lease_kq_abandoned(
    kq: RedisTransport, connection: kombu.Connection, raw: redis.Redis, prefix: str
) -> None:
    kq.publish("work", Envelope(BODY, "application/json", headers=HEADERS))
    [taken] = kq.fetch(["work"], 1, 1.0)
    kq._held.clear()  # as if kq's process had died: nothing is given back on close
    time.sleep(1.2)
    connection.default_channel.qos.restore_visible(num=10, interval=1)
    assert raw.hlen(f"{prefix}unacked") == 0
    [again] = kq.fetch(["work"], 1, 1.0)
    assert again.redelivered and again.envelope.body == BODY
    assert taken.envelope.headers == HEADERS


def test_kq_gives_back_a_lease_a_dead_kombu_consumer_left(
    kq: RedisTransport, redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    """kombu's entry names exchange "work" (SimpleQueue's), so kq looks up kombu's binding."""
    code = (
        "import os, sys, kombu\n"
        "with kombu.Connection(sys.argv[1], transport_options={'global_keyprefix': sys.argv[2]})"
        " as conn:\n"
        "    queue = conn.SimpleQueue('work')\n"
        "    queue.put({'n': 1})\n"
        "    print(queue.get(timeout=5).payload['n'], flush=True)\n"
        "    os._exit(0)  # die holding the message\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, redis_url, prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "1"
    [entry] = raw.hvals(f"{prefix}unacked")
    assert json.loads(entry)[1:] == ["work", "work"]
    [got] = drain(kq, ["work"], 1, timeout=10)
    assert got.redelivered and json.loads(got.envelope.body) == {"n": 1}


def test_a_kombu_consumer_of_a_fanout_exchange_hears_kq_broadcasts(
    kq: RedisTransport, connection: kombu.Connection
) -> None:
    """How Celery's event receivers (``celery events``, Flower) hear kq workers' events: a
    queue bound to a fanout exchange of the channel's name with routing key ``#``. kombu
    subscribes as it first waits for messages, so kq broadcasts until one arrives."""
    exchange = kombu.Exchange("celeryev", type="fanout")
    queue = kombu.Queue("celeryev.test", exchange, routing_key="#", auto_delete=True, durable=False)
    received: list[kombu.Message] = []
    with connection.Consumer(queue, callbacks=[lambda body, message: received.append(message)]):
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            kq.broadcast("celeryev", Envelope(b'{"type": "worker-heartbeat"}', "application/json"))
            try:
                connection.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    assert received
    assert received[0].decode() == {"type": "worker-heartbeat"}
    assert received[0].content_type == "application/json"
