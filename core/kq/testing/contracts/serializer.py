"""The serializer contract: round trips of what tasks send, and refusal of garbage.

Subclass and name the serializer::

    class TestMsgpack(SerializerContract):
        @pytest.fixture
        def serializer_name(self):
            return "msgpack"
"""

from __future__ import annotations

import pytest

from kq.exceptions import ContentDisallowed, MessageRejected
from kq.plugins import get_plugins
from kq.serialization import Serializers, SerializerSpec

#: Values every serializer must carry unchanged: what JSON can express.
ROUND_TRIP_VALUES = [
    None, True, False, 0, -1, 2**53, 1.5, "", "text", "żółw ✓ \u0000 \n",
    [], [1, "a", None], {}, {"a": 1, "nested": {"list": [1, 2, {"b": None}]}},
    [[[], {}], {"k": ["v"]}],
]


class SerializerContract:
    """Tests every serializer plugin must pass. Subclasses provide ``serializer_name``."""

    @pytest.fixture
    def serializer_name(self) -> str:
        raise NotImplementedError("a SerializerContract subclass must provide serializer_name")

    @pytest.fixture
    def serializers(self) -> Serializers:
        return get_plugins().serializers()

    @pytest.fixture
    def spec(self, serializers: Serializers, serializer_name: str) -> SerializerSpec:
        return serializers.get(serializer_name)

    def test_found_by_name_and_by_content_type(self, serializers: Serializers,
                                               spec: SerializerSpec) -> None:
        assert serializers.get(spec.content_type) is spec
        assert "/" in spec.content_type
        assert spec.content_encoding in ("utf-8", "binary")

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
    def test_round_trip(self, spec: SerializerSpec, value: object) -> None:
        data = spec.dumps(value)
        assert isinstance(data, bytes)
        assert spec.loads(data) == value

    def test_task_body_round_trip(self, spec: SerializerSpec) -> None:
        body = [[1, 2], {"x": "y"}, {"callbacks": None, "errbacks": None, "chain": None,
                                     "chord": None}]
        assert spec.loads(spec.dumps(body)) == body

    @pytest.mark.parametrize("garbage", [b"", b"\xff\xfe\x00garbage", b"{[", b"\x80"])
    def test_garbage_is_rejected_not_returned(self, serializers: Serializers,
                                              spec: SerializerSpec, garbage: bytes) -> None:
        accept = frozenset({spec.content_type})
        try:
            value = serializers.loads(garbage, spec.content_type, accept)
        except MessageRejected as exc:
            assert exc.reason == "decode"
        else:  # a few formats give a meaning to some of these bytes; it must be a plain value
            assert value is None or isinstance(value, (int, float, str, bytes, list, dict))

    def test_not_decoded_unless_accepted(self, serializers: Serializers,
                                         spec: SerializerSpec) -> None:
        with pytest.raises(ContentDisallowed):
            serializers.loads(spec.dumps([1]), spec.content_type, frozenset({"text/x-other"}))
