"""What is special to kq-cbor: RFC 8949's own examples decode, bytes and big integers travel
through a real worker, and hostile bodies are refused before cbor2 builds anything."""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from kq import App
from kq.exceptions import MessageRejected
from kq.plugins import get_plugins
from kq.serialization import to_plain
from kq.testing.imports import imported_on_load
from kq.testing.worker import worker_thread
from kq_cbor import CONTENT_TYPE, dumps, loads
from kq_cbor.codec import MAX_DEPTH

# RFC 8949, Appendix A: encoded bytes (hex) and the value they stand for.
RFC_EXAMPLES = [
    ("00", 0),
    ("17", 23),
    ("1818", 24),
    ("1903e8", 1000),
    ("1bffffffffffffffff", 2**64 - 1),
    ("c249010000000000000000", 2**64),
    ("3bffffffffffffffff", -(2**64)),
    ("c349010000000000000000", -(2**64) - 1),
    ("29", -10),
    ("f90000", 0.0),
    ("f93c00", 1.0),
    ("fb3ff199999999999a", 1.1),
    ("fa47c35000", 100000.0),
    ("fb7e37e43c8800759c", 1.0e300),
    ("f4", False),
    ("f5", True),
    ("f6", None),
    ("40", b""),
    ("4401020304", b"\x01\x02\x03\x04"),
    ("60", ""),
    ("6449455446", "IETF"),
    ("62c3bc", "\u00fc"),
    ("80", []),
    ("8301820203820405", [1, [2, 3], [4, 5]]),
    ("a0", {}),
    ("a26161016162820203", {"a": 1, "b": [2, 3]}),
    ("826161a161626163", ["a", {"b": "c"}]),
]

# Bodies a worker must refuse, each for a reason check() names.
HOSTILE = {
    "tag 0, a datetime string": "c074323031332d30332d32315432303a30343a30305a",
    "tag 1, an epoch datetime": "c11a514b67b0",
    "tag 35, a regular expression": "d8236161",
    "tag 28/29, shared references": "d81c81d81d00",
    "tag 258, a set": "d9010281 01",
    "a bignum tag on a text string": "c26161",
    "undefined": "f7",
    "an unassigned simple value": "f0",
    "an indefinite-length array": "9f0102ff",
    "an indefinite-length string": "7f6161ff",
    "an array claiming 4 billion items": "9affffffff" + "00",
    "a byte string claiming 4 GB": "5b00000000ffffffff" + "00" * 4,
    "a map claiming more entries than bytes": "b90100" + "616100" * 10,
    "a map with an integer key": "a10102",
    "a map with a bytes key": "a1416100",
    "trailing bytes": "0102",
    "a truncated array": "830102",
    "a truncated float": "fb3ff1",
    "a truncated header": "19",
    "nothing at all": "",
    "text that is not UTF-8": "62c328",
    "reserved additional information": "1c",
    "nesting deeper than the limit": "81" * (MAX_DEPTH + 5) + "00",
}


@pytest.mark.parametrize("encoded, value", RFC_EXAMPLES, ids=[hexa for hexa, _ in RFC_EXAMPLES])
def test_decodes_what_other_cbor_writers_write(encoded: str, value: Any) -> None:
    decoded = loads(bytes.fromhex(encoded))
    assert decoded == value and type(decoded) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        b"\x00\xff" * 100,
        2**64 - 1,
        -(2**64),
        2**200,
        -(2**200),
        1e300,
        -0.0,
        "\u0000żółw ✓",
        {"k": [b"", None, {"n": 1.5}]},
    ],
    ids=repr,
)
def test_round_trips_what_json_cannot_carry(value: Any) -> None:
    assert loads(dumps(value)) == value


def test_dates_uuids_decimals_and_sets_arrive_as_kq_json_sends_them() -> None:
    value = [
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
        date(2026, 1, 2),
        uuid.UUID(int=7),
        Decimal("1.10"),
        {3},
    ]
    assert loads(dumps(value)) == [to_plain(v) for v in value]


@pytest.mark.parametrize("value", [Fraction(1, 3), {1: "integer key"}, [{(1, 2): "tuple key"}]], ids=repr)
def test_values_workers_would_refuse_are_refused_when_sent(value: Any) -> None:
    with pytest.raises(ValueError, match="cannot send this value as CBOR"):
        dumps(value)


def test_unknown_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="not serializable"):
        dumps(object())


@pytest.mark.parametrize("encoded", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_are_refused_before_decoding(encoded: str) -> None:
    body = bytes.fromhex(encoded.replace(" ", ""))
    with pytest.raises(ValueError):
        loads(body)
    # Through kq's registry, as a worker decodes: a "decode" rejection, never a crash.
    with pytest.raises(MessageRejected) as info:
        get_plugins().serializers().loads(body, CONTENT_TYPE, frozenset({CONTENT_TYPE}))
    assert info.value.reason == "decode"


def echo(value: Any) -> Any:
    return value


def test_a_worker_runs_a_task_with_bytes_and_big_integers(kq_app: App) -> None:
    kq_app.configure(task_serializer="cbor", result_serializer="cbor", accept_content=["json", "cbor"])
    task = kq_app.task(echo, name="kq_cbor.echo")
    value = {"blob": bytes(range(256)), "big": 2**100, "text": "żółw"}
    with worker_thread(kq_app, pool="threads", concurrency=2):
        assert task.delay(value).get(timeout=30) == value


def test_cbor2_waits_for_the_first_message() -> None:
    # kq imports every plugin's entry-point module in every process; cbor2 is not needed there.
    assert imported_on_load("kq_cbor", "kq_cbor.codec", "cbor2") == ["kq_cbor"]


def plain(value: Any, depth: int = 0) -> bool:
    """Only the types a task's arguments are made of, all the way down."""
    if isinstance(value, list):
        return all(plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(type(k) is str and plain(v, depth + 1) for k, v in value.items())
    return value is None or type(value) in (bool, int, float, str, bytes)


@pytest.mark.parametrize("seed", range(4))
def test_damaged_bodies_decode_to_plain_values_or_are_refused(seed: int) -> None:
    """Real task bodies with bytes flipped, cut or inserted: whatever passes the scan, cbor2
    turns into plain values only; everything else raises ValueError, nothing hangs or crashes."""
    rng = random.Random(seed)
    bodies = [dumps([[n, "żółw", b"\x00" * n, {"k": [1.5, None, 2**70]}], {"x": n}, {}]) for n in range(8)]
    refused = 0
    for _ in range(2000):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body))
            action = rng.randrange(3)
            if action == 0:
                body[at] = rng.randrange(256)
            elif action == 1:
                del body[at:]
                if not body:
                    break
            else:
                body[at:at] = bytes([rng.randrange(256)])
        try:
            value = loads(bytes(body))
        except ValueError:
            refused += 1
        else:
            assert plain(value), value
    assert refused > 0
