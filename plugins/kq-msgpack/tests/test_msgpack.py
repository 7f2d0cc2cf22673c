"""What is special to msgpack: kombu's wire format, json's extra types, bounded decoding."""

from __future__ import annotations

import datetime
import tracemalloc
import uuid
from decimal import Decimal

import kombu.serialization
import msgpack
import pytest

from kq.exceptions import MessageRejected
from kq.plugins import get_plugins
from kq.serialization import Serializers, SerializerSpec
from kq_msgpack import CONTENT_TYPE

BODY = [[1, "żółw", b"\x00\xff"], {"when": None, "nested": {"list": [1.5, True]}}, {}]


@pytest.fixture
def serializers() -> Serializers:
    return get_plugins().serializers()


@pytest.fixture
def spec(serializers: Serializers) -> SerializerSpec:
    return serializers.get("msgpack")


def refused(serializers: Serializers, body: bytes) -> MessageRejected:
    with pytest.raises(MessageRejected) as info:
        serializers.loads(body, CONTENT_TYPE, frozenset({CONTENT_TYPE}))
    assert info.value.reason == "decode"
    return info.value


def test_declared_as_kombu_declares_it(spec: SerializerSpec) -> None:
    assert (spec.content_type, spec.content_encoding, spec.safe) == ("application/x-msgpack", "binary", True)


def test_celery_reads_what_kq_writes_and_the_other_way_round(spec: SerializerSpec) -> None:
    content_type, encoding, payload = kombu.serialization.dumps(BODY, serializer="msgpack")
    assert (content_type, encoding) == (spec.content_type, spec.content_encoding)
    assert spec.loads(payload) == BODY
    assert (
        kombu.serialization.loads(spec.dumps(BODY), spec.content_type, "binary", accept=[spec.content_type])
        == BODY
    )


def test_bytes_and_text_stay_apart(spec: SerializerSpec) -> None:
    assert spec.loads(spec.dumps([b"abc", "abc"])) == [b"abc", "abc"]


def test_extra_types_arrive_as_the_json_serializer_sends_them(
    serializers: Serializers, spec: SerializerSpec
) -> None:
    json = serializers.get("json")
    values = [
        datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
        datetime.date(2024, 5, 1),
        datetime.time(12, 30),
        uuid.UUID(int=7),
        Decimal("1.10"),
        {3},
        frozenset({"a"}),
    ]
    assert spec.loads(spec.dumps(values)) == json.loads(json.dumps(values))
    with pytest.raises(TypeError, match="object"):
        spec.dumps([object()])
    with pytest.raises(ValueError, match="64 bits"):
        spec.dumps([2**64])
    assert spec.loads(spec.dumps([2**64 - 1, -(2**63)])) == [2**64 - 1, -(2**63)]


def test_timestamps_from_other_writers_arrive_as_aware_datetimes(spec: SerializerSpec) -> None:
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    assert spec.loads(msgpack.packb([when], datetime=True)) == [when]


@pytest.mark.parametrize(
    "header",
    [
        b"\xdd\xff\xff\xff\xff",  # array32 of 4 billion items
        b"\xdf\xff\xff\xff\xff",  # map32 of 4 billion pairs
        b"\xdb\xff\xff\xff\xff",  # str32 of 4 GB
        b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GB
        b"\xc9\xff\xff\xff\xff\x01",  # ext32 of 4 GB
    ],
    ids=["array", "map", "str", "bin", "ext"],
)
def test_a_forged_length_is_refused_before_anything_is_allocated(
    serializers: Serializers, header: bytes
) -> None:
    tracemalloc.start()
    try:
        refused(serializers, header + b"\x00" * 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_deep_nesting_is_refused(serializers: Serializers) -> None:
    assert "StackError" in str(refused(serializers, b"\x91" * 100_000 + b"\x00"))


def test_only_text_or_bytes_map_keys(serializers: Serializers) -> None:
    assert "int is not allowed for map key" in str(refused(serializers, msgpack.packb({1: "a"})))
