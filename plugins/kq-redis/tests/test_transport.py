"""What is special to the Redis broker, checked by looking at Redis itself: batch claims and
leases, delayed messages kept in Redis, priorities, dead letters, lease expiry, failures."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from kq.exceptions import BrokerUnavailable, ConfigurationError
from kq.protocol import utcnow
from kq.testing.contracts.transport import body_n, drain, envelope
from kq.testing.imports import imported_on_load
from kq.transport import ORIGINAL_QUEUE_HEADER, REJECT_REASON_HEADER
from kq_redis.transport import RedisTransport
from kq_redis.wire import SEP

Make = Callable[..., RedisTransport]
#: The list suffix of messages without a priority: kq's lowest, kombu's 9.
LOW = f"{SEP}9"


@pytest.fixture
def make(redis_url: str, prefix: str) -> Iterator[Make]:
    made: list[RedisTransport] = []

    def build(**options: Any) -> RedisTransport:
        transport = RedisTransport(redis_url, {"global_keyprefix": prefix, **options})
        made.append(transport)
        return transport

    yield build
    for transport in made:
        transport.close()


def test_one_fetch_claims_a_batch_into_kombus_unacked_structures(
    make: Make, raw: redis.Redis, prefix: str
) -> None:
    transport = make()
    transport.publish_many(("work", envelope(n)) for n in range(50))
    assert raw.llen(f"{prefix}work{LOW}") == 50
    before = time.time()
    batch = transport.fetch(["work"], 20, 1.0)
    assert [body_n(d) for d in batch] == list(range(20))
    assert raw.llen(f"{prefix}work{LOW}") == 30
    unacked = raw.hgetall(f"{prefix}unacked")
    index = raw.zrange(f"{prefix}unacked_index", 0, -1, withscores=True)
    assert len(unacked) == len(index) == 20
    assert {tag for tag, _ in index} == set(unacked)
    assert all(before - 1 < score < time.time() + 1 for _, score in index)  # scored by lease time
    message, exchange, routing_key = json.loads(next(iter(unacked.values())))
    assert (exchange, routing_key) == ("", "work")  # kombu's [message, exchange, routing_key]
    assert message["properties"]["delivery_info"]["routing_key"] == "work"
    transport.ack(batch)
    assert raw.hlen(f"{prefix}unacked") == 0 and raw.zcard(f"{prefix}unacked_index") == 0


def test_delayed_messages_wait_in_redis_not_in_the_consumer(
    make: Make, raw: redis.Redis, prefix: str
) -> None:
    # A visibility timeout shorter than the delay: the message must still be delivered once.
    consumer, other, producer = make(visibility_timeout=1), make(visibility_timeout=1), make()
    due = utcnow() + timedelta(seconds=2.5)
    producer.publish("work", envelope(1), eta=due)
    assert raw.zcard(f"{prefix}_kq.delayed.work") == 1
    assert raw.exists(f"{prefix}work{LOW}") == 0 and producer.depth("work") == 0
    assert consumer.fetch(["work"], 10, 0.5) == []
    assert raw.hlen(f"{prefix}unacked") == 0  # nothing leased, so nothing for a timeout to restore
    got = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:  # two consumers, past the due time and a lease timeout
        for transport in (consumer, other):
            batch = transport.fetch(["work"], 10, 0.2)
            transport.ack(batch)
            got += batch
    assert [body_n(d) for d in got] == [1]
    assert not got[0].redelivered
    assert raw.zcard(f"{prefix}_kq.delayed.work") == 0


def test_without_native_delay_a_delayed_message_goes_to_its_queue_at_once(
    make: Make, raw: redis.Redis, prefix: str
) -> None:
    """For Celery workers, which read only the queue and hold an early message themselves."""
    transport = make(native_delay=False)
    transport.publish("work", envelope(1), eta=utcnow() + timedelta(hours=1))
    assert raw.exists(f"{prefix}_kq.delayed.work") == 0
    assert [body_n(d) for d in transport.fetch(["work"], 10, 1.0)] == [1]


def test_a_consumer_blocked_on_an_empty_queue_wakes_for_a_delayed_message(make: Make) -> None:
    consumer, producer = make(), make()
    timer = threading.Timer(
        0.2, producer.publish, args=("work", envelope(4)), kwargs={"eta": utcnow() + timedelta(seconds=0.5)}
    )
    start = time.monotonic()
    timer.start()
    try:
        got = consumer.fetch(["work"], 10, 30.0)
    finally:
        timer.join()
    assert [body_n(d) for d in got] == [4]
    # Without the publisher's bell it would sleep until its longest block (15 s) ends.
    assert time.monotonic() - start < 10


def test_priorities_use_kombus_sub_lists_with_redis_order(make: Make, raw: redis.Redis, prefix: str) -> None:
    transport = make()
    for n, priority in enumerate([None, 0, 3, 5, 7, 9]):
        transport.publish("work", envelope(n, priority=priority))
    lists = {key.decode(): raw.llen(key) for key in raw.scan_iter(match=f"{prefix}work*")}
    # kq's 9 is kombu's 0 (the queue's own list); none and 0 are kombu's 9.
    assert lists == {
        f"{prefix}work": 2,
        f"{prefix}work{SEP}3": 1,
        f"{prefix}work{SEP}6": 1,
        f"{prefix}work{SEP}9": 2,
    }
    got = drain(transport, ["work"], 6)
    # Four levels, as in kombu: 9 and 7 share a list, first in first out.
    assert [body_n(d) for d in got] == [4, 5, 3, 2, 0, 1]
    assert [d.envelope.priority for d in got] == [7, 9, 5, 3, 0, 0]


def test_more_priority_steps(make: Make, raw: redis.Redis, prefix: str) -> None:
    transport = make(priority_steps=list(range(10)))
    for n in range(10):
        transport.publish("work", envelope(n, priority=n))
    assert raw.exists(*(f"{prefix}work{SEP}{step}" for step in range(1, 10))) == 9
    assert [body_n(d) for d in drain(transport, ["work"], 10)] == list(range(9, -1, -1))


def test_dead_letter_keeps_the_message_and_the_reason(make: Make, raw: redis.Redis, prefix: str) -> None:
    transport = make()
    transport.publish("work", envelope(6))
    [got] = transport.fetch(["work"], 1, 1.0)
    transport.reject(got, requeue=False, reason="unknown-task: nobody knows it")
    assert raw.hlen(f"{prefix}unacked") == 0
    [stored] = raw.lrange(f"{prefix}work.dlq{LOW}", 0, -1)
    message = json.loads(stored)
    assert message["headers"][REJECT_REASON_HEADER] == "unknown-task: nobody knows it"
    assert message["properties"]["delivery_info"]["routing_key"] == "work.dlq"
    [dead] = transport.fetch(["work.dlq"], 1, 1.0)
    assert body_n(dead) == 6


def test_unreadable_bytes_are_delivered_for_rejection_and_dead_lettered_with_the_reason(
    make: Make, raw: redis.Redis, prefix: str
) -> None:
    transport = make()
    raw.lpush(f"{prefix}work", b"\xff not json")
    [got] = transport.fetch(["work"], 1, 1.0)
    assert got.envelope.headers == {} and got.envelope.body == b"\xff not json"
    transport.reject(got, requeue=False, reason="malformed: not kombu's layout")
    # The bytes become the body of a message of kombu's layout, which carries the reason.
    [dead] = transport.fetch(["work.dlq"], 1, 1.0)
    assert dead.envelope.body == b"\xff not json"
    assert dead.envelope.headers[REJECT_REASON_HEADER] == "malformed: not kombu's layout"
    assert dead.envelope.headers[ORIGINAL_QUEUE_HEADER] == "work"


def test_leases_of_a_dead_consumer_come_back_flagged_as_redelivered(
    make: Make, redis_url: str, raw: redis.Redis, prefix: str
) -> None:
    make().publish_many(("work", envelope(n)) for n in range(3))
    code = (
        "import os, sys\n"
        "from kq_redis.transport import RedisTransport\n"
        "t = RedisTransport(sys.argv[1], {'global_keyprefix': sys.argv[2]})\n"
        "print(len(t.fetch(['work'], 10, 5.0)), flush=True)\n"
        "os._exit(0)  # die holding the leases, without closing\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, redis_url, prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "3"
    assert raw.hlen(f"{prefix}unacked") == 3
    survivor = make(visibility_timeout=1)
    got = drain(survivor, ["work"], 3, timeout=15)
    assert sorted(body_n(d) for d in got) == [0, 1, 2]
    assert all(d.redelivered for d in got)
    assert raw.hlen(f"{prefix}unacked") == 0


def test_close_returns_unacked_messages_in_order_at_the_front(make: Make) -> None:
    first = make()
    first.publish_many(("work", envelope(n)) for n in range(6))
    taken = first.fetch(["work"], 3, 1.0)
    first.close()
    got = drain(make(), ["work"], 6)
    assert [body_n(d) for d in got] == [0, 1, 2, 3, 4, 5]
    assert [d.redelivered for d in got] == [True] * 3 + [False] * 3
    assert [body_n(d) for d in taken] == [0, 1, 2]


def test_after_a_connection_failure_close_keeps_the_leases_for_a_new_instance_to_ack(
    make: Make, raw: redis.Redis, prefix: str
) -> None:
    """The worker's reconnect path: deliveries fetched before the failure stay leased and are
    acked through the next instance, instead of being handed to another consumer."""
    consumer = make()
    consumer.publish_many(("work", envelope(n)) for n in range(3))
    held = consumer.fetch(["work"], 10, 1.0)
    [connection_id] = consumer._link.run(("CLIENT", "ID"))  # the connection the next fetch blocks on
    killer = threading.Timer(0.3, raw.client_kill_filter, kwargs={"_id": connection_id})
    killer.start()
    try:
        with pytest.raises(BrokerUnavailable, match="Redis broker at redis://"):
            consumer.fetch(["work"], 10, 5.0)
    finally:
        killer.join()
    consumer.close()
    assert raw.hlen(f"{prefix}unacked") == 3 and raw.llen(f"{prefix}work{LOW}") == 0
    make().ack(held)
    assert raw.hlen(f"{prefix}unacked") == 0 and raw.zcard(f"{prefix}unacked_index") == 0


def test_an_expired_lease_acked_late_is_harmless(make: Make, raw: redis.Redis, prefix: str) -> None:
    slow, fast = make(visibility_timeout=1), make(visibility_timeout=1)
    slow.publish("work", envelope(1))
    [first] = slow.fetch(["work"], 1, 1.0)
    [again] = drain(fast, ["work"], 1, ack=False, timeout=10)
    slow.reject(first, requeue=True)  # too late: the lease went to fast, nothing is pushed
    assert raw.llen(f"{prefix}work{LOW}") == 0
    slow.ack([first])
    fast.ack([again])
    assert raw.hlen(f"{prefix}unacked") == 0


def test_a_dead_subscribers_queue_is_dropped_by_the_next_broadcast(
    make: Make, raw: redis.Redis, prefix: str
) -> None:
    dead, live, sender = make(visibility_timeout=1), make(), make()
    gone = dead.subscribe("control")
    stays = live.subscribe("control")
    sender.broadcast("control", envelope(1))
    assert raw.llen(f"{prefix}{gone}{LOW}") == 1
    dead._subscriptions.clear()  # as if its process died: never renewed, never unsubscribed
    time.sleep(1.2)
    sender.broadcast("control", envelope(2))
    assert raw.exists(f"{prefix}{gone}{LOW}") == 0
    assert [body_n(d) for d in drain(live, [stays], 2)] == [1, 2]


def test_unreachable_broker_raises_broker_unavailable_without_the_password() -> None:
    transport = RedisTransport("redis://:s3cret@127.0.0.1:1/0", {"socket_connect_timeout": 2})
    with pytest.raises(BrokerUnavailable) as caught:
        transport.publish("work", envelope(1))
    assert "s3cret" not in str(caught.value) and "redis://:**@127.0.0.1:1/0" in str(caught.value)
    transport.close()


@pytest.mark.parametrize(
    "options, word",
    [
        ({"visibility_timout": 5}, "unknown redis option"),
        ({"visibility_timeout": 0}, "visibility_timeout"),
        ({"priority_steps": [3, 6]}, "priority_steps"),
        ({"priority_steps": [0, 12]}, "priority_steps"),
        ({"native_delay": "no"}, "native_delay must be true or false"),
    ],
)
def test_bad_options_fail_at_once(options: dict[str, Any], word: str) -> None:
    with pytest.raises(ConfigurationError, match=word):
        RedisTransport("redis://127.0.0.1:6379/15", options)


def test_unix_socket_urls() -> None:
    transport = RedisTransport("redis+socket:///run/redis/redis.sock?virtual_host=3")
    kwargs = transport._pool.connection_kwargs
    assert (kwargs["path"], kwargs["db"]) == ("/run/redis/redis.sock", 3)
    with pytest.raises(ConfigurationError, match="no host"):
        RedisTransport("redis+socket://somehost/run/redis.sock")


def test_loading_the_plugin_leaves_redis_py_for_the_first_broker_or_backend() -> None:
    assert imported_on_load("kq_redis", "kq_redis.transport", "kq_redis.backend", "kq_redis.connection") == [
        "kq_redis"
    ]
