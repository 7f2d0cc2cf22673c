"""Bytes in a queue that no kq or Celery client wrote: each is delivered (for the worker to
reject) and dead-lettered with its reason, never an exception in the consumer and never a
message left leased to come back forever. The named cases are bugs fuzzing found; the property
tests below are the fuzzing (the kernel's side is in tests/fuzz)."""

from __future__ import annotations

import json
import random

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kq.testing.contracts.transport import envelope
from kq.testing.fuzz import hostile_json, hostile_value, mutate
from kq.transport import REJECT_REASON_HEADER, Envelope
from kq_redis import wire
from kq_redis.transport import RedisTransport


def kombu_message(**changes: object) -> bytes:
    message = json.loads(wire.encode(envelope(1), "work"))
    for path, value in changes.items():
        target = message
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return json.dumps(message).encode()


HOSTILE = {
    # json reads NaN and Infinity; int() of them raised out of fetch and stopped the worker.
    "NaN priority": kombu_message(properties__priority=float("nan")),
    "infinite priority": kombu_message(properties__priority=float("inf")),
    # Deeper than Python's recursion limit: json raised RecursionError, not ValueError.
    "deep nesting": b'{"headers": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    # A lone surrogate could not be written back as UTF-8: the dead letter failed, and the
    # message stayed leased, to be delivered and rejected again after every visibility timeout.
    "lone surrogate": kombu_message(headers__id="\ud800", headers__task="\udfff"),
    # Not base64: delivered unreadable, and its dead letter could not be read back either.
    "bad base64": kombu_message(body="not base64!"),
}


@pytest.mark.parametrize("raw_bytes", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bytes_are_delivered_and_dead_lettered_with_the_reason(
    redis_url: str, raw: redis.Redis, prefix: str, raw_bytes: bytes
) -> None:
    transport = RedisTransport(redis_url, {"global_keyprefix": prefix})
    try:
        raw.lpush(f"{prefix}work", raw_bytes)
        [got] = transport.fetch(["work"], 1, 1.0)
        assert got.envelope.priority is None or 0 <= got.envelope.priority <= 9
        transport.reject(got, requeue=False, reason="malformed: hostile")
        assert raw.hlen(f"{prefix}unacked") == 0
        assert transport.depth("work") == 0
        [dead] = transport.fetch(["work.dlq"], 1, 1.0)
        assert dead.envelope.headers[REJECT_REASON_HEADER] == "malformed: hostile"
        transport.ack([dead])
    finally:
        transport.close()


# --- property tests: any bytes at all --------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])


def parse(raw_bytes: bytes) -> Envelope:
    """Everything kq-redis does with bytes it pops or finds in its unacked hash; none of it may
    raise, and a dead letter can always be read back with its reason."""
    got, redelivered = wire.decode(raw_bytes)
    assert isinstance(redelivered, bool)
    assert got.priority is None or 0 <= got.priority <= 9
    assert 0 <= wire.message_priority(raw_bytes) <= 9
    wire.redelivered_copy(raw_bytes)
    dead, _ = wire.decode(wire.dead_letter_copy(raw_bytes, "work", "malformed: fuzz"))
    assert dead.headers[REJECT_REASON_HEADER] == "malformed: fuzz"
    wire.unacked_entry(json.dumps([raw_bytes.decode("latin-1"), "", "work"]).encode())
    return got


@FUZZ
@given(raw_bytes=st.binary(max_size=1024))
def test_any_bytes_parse_or_come_back_unreadable(raw_bytes: bytes) -> None:
    parse(raw_bytes)


FIELDS = [
    ("properties", "priority"),
    ("properties", "body_encoding"),
    ("properties",),
    ("properties", "delivery_info"),
    ("properties", "correlation_id"),
    ("headers",),
    ("body",),
    ("content-type",),
    ("content-encoding",),
]


@FUZZ
@given(seed=st.integers(0, 2**32))
def test_kombu_envelopes_with_hostile_fields_and_bytes(seed: int) -> None:
    rng = random.Random(seed)
    message = json.loads(wire.encode(envelope(rng.randrange(100)), "work"))
    for path in rng.sample(FIELDS, rng.randint(1, 3)):
        target = message
        for key in path[:-1]:
            target = target[key] if isinstance(target.get(key), dict) else target
        target[path[-1]] = hostile_value(rng)
    data = hostile_json(message)
    if rng.random() < 0.3:
        data = mutate(Envelope(data, ""), rng).body
    parse(data)
