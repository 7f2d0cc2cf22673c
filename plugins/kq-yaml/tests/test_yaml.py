"""What is special to YAML: kombu's wire format, safe loading only, no alias bombs."""

from __future__ import annotations

import datetime
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import kombu.serialization
import pytest
import yaml

from kq.exceptions import MessageRejected
from kq.plugins import get_plugins
from kq.serialization import Serializers, SerializerSpec
from kq_yaml import CONTENT_TYPE

BODY = [[1, "żółw"], {"when": None, "nested": {"list": [1.5, True]}}, {}]


@pytest.fixture
def serializers() -> Serializers:
    return get_plugins().serializers()


@pytest.fixture
def spec(serializers: Serializers) -> SerializerSpec:
    return serializers.get("yaml")


def refused(serializers: Serializers, body: bytes) -> MessageRejected:
    with pytest.raises(MessageRejected) as info:
        serializers.loads(body, CONTENT_TYPE, frozenset({CONTENT_TYPE}))
    assert info.value.reason == "decode"
    return info.value


def test_declared_as_kombu_declares_it(spec: SerializerSpec) -> None:
    assert (spec.content_type, spec.content_encoding, spec.safe) == ("application/x-yaml", "utf-8", True)


def test_celery_reads_what_kq_writes_and_the_other_way_round(spec: SerializerSpec) -> None:
    content_type, encoding, payload = kombu.serialization.dumps(BODY, serializer="yaml")
    assert (content_type, encoding) == (spec.content_type, spec.content_encoding)
    assert spec.loads(payload.encode() if isinstance(payload, str) else payload) == BODY
    assert (
        kombu.serialization.loads(spec.dumps(BODY), spec.content_type, "utf-8", accept=[spec.content_type])
        == BODY
    )


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {path}']",
        "!!python/object/apply:subprocess.call [[touch, '{path}']]",
    ],
    ids=["os.system", "subprocess"],
)
def test_python_tags_are_refused_and_never_run(
    serializers: Serializers, tmp_path: Path, payload: str
) -> None:
    pwned = tmp_path / "pwned"
    body = f"- {payload.format(path=pwned)}\n- {{}}\n- {{}}\n".encode()
    # The payload is real: PyYAML's unsafe loader runs it.
    yaml.unsafe_load(body)
    assert pwned.exists()
    pwned.unlink()
    assert "could not determine a constructor" in str(refused(serializers, body))
    assert not pwned.exists()


def test_aliases_are_refused_so_a_billion_laughs_cannot_be_expanded(serializers: Serializers) -> None:
    # 9 ** 9 (387 million) leaves in 300 bytes: loaded as shared references it is tiny, but a
    # task returning or logging it would make the worker write every leaf.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bomb = "\n".join(lines).encode()
    # What plain safe_load makes of it: one small list referenced 9 times at each level.
    loaded = yaml.safe_load(bomb)
    assert loaded["i"][0] is loaded["i"][8] and loaded["h"][0] is loaded["i"][0][0]
    assert "aliases" in str(refused(serializers, bomb))


@pytest.mark.parametrize(
    "document", [b"&a [*a]", b"base: &b {x: 1}\nuse:\n  <<: *b\n"], ids=["recursive", "merge-key"]
)
def test_every_kind_of_alias_is_refused(serializers: Serializers, document: bytes) -> None:
    assert "aliases" in str(refused(serializers, document))


def test_an_anchor_alone_is_harmless_and_loads(spec: SerializerSpec) -> None:
    assert spec.loads(b"a: &first 1\nb: {<<: {c: 2}}\n") == {"a": 1, "b": {"c": 2}}


def test_a_value_repeated_in_a_message_is_written_in_full(spec: SerializerSpec) -> None:
    shared = {"k": [1, 2]}
    data = spec.dumps([shared, shared])
    assert b"&" not in data and b"*" not in data
    assert spec.loads(data) == [shared, shared]


def test_extra_types(spec: SerializerSpec) -> None:
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    # YAML has its own timestamps and sets (as with kombu's yaml); UUIDs and Decimals become
    # the strings kq's json makes of them.
    values = [when, datetime.date(2024, 5, 1), {3}, uuid.UUID(int=7), Decimal("1.10")]
    assert spec.loads(spec.dumps(values)) == [
        when,
        datetime.date(2024, 5, 1),
        {3},
        str(uuid.UUID(int=7)),
        "1.10",
    ]
    with pytest.raises(TypeError, match="object"):
        spec.dumps([object()])


def test_yaml_is_imported_only_when_first_used() -> None:
    code = (
        "import sys; from kq.plugins import get_plugins; get_plugins().serializers(); "
        "print('yaml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("document", [b"[" * 100_000, b"- " * 100_000 + b"x"], ids=["flow", "block"])
def test_deep_nesting_is_refused(serializers: Serializers, document: bytes) -> None:
    refused(serializers, document)
