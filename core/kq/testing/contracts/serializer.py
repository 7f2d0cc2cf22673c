"""The serializer contract: round trips of what tasks send, refusal of garbage, and a real
worker that runs tasks sent in the format when ``accept_content`` lists it and rejects them
(dead-lettered where the broker can) when it does not.

The worker tests use the ``kq_app`` fixture of kq's pytest plugin: an SQLite file by default
(kq-sqlite and kq-threads installed), or whatever ``KQ_TEST_BROKER_URL`` names.

Subclass and name the serializer::

    class TestMsgpack(SerializerContract):
        @pytest.fixture
        def serializer_name(self):
            return "msgpack"
"""

from __future__ import annotations

from typing import Any

import pytest

from kq.app import App
from kq.exceptions import ContentDisallowed, MessageRejected
from kq.plugins import get_plugins
from kq.serialization import Serializers, SerializerSpec
from kq.states import PENDING
from kq.transport import dead_letter_queue

from ..worker import worker_thread
from .pool import wait_until
from .transport import drain

#: Values every serializer must carry unchanged: what JSON can express.
ROUND_TRIP_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**53,
    1.5,
    "",
    "text",
    "żółw ✓ \u0000 \n",
    [],
    [1, "a", None],
    {},
    {"a": 1, "nested": {"list": [1, 2, {"b": None}]}},
    [[[], {}], {"k": ["v"]}],
]


def echo(value: Any) -> Any:
    return value


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

    def test_found_by_name_and_by_content_type(self, serializers: Serializers, spec: SerializerSpec) -> None:
        assert serializers.get(spec.content_type) is spec
        assert "/" in spec.content_type
        assert spec.content_encoding in ("utf-8", "binary")

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
    def test_round_trip(self, spec: SerializerSpec, value: object) -> None:
        data = spec.dumps(value)
        assert isinstance(data, bytes)
        assert spec.loads(data) == value

    def test_task_body_round_trip(self, spec: SerializerSpec) -> None:
        body = [[1, 2], {"x": "y"}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
        assert spec.loads(spec.dumps(body)) == body

    @pytest.mark.parametrize("garbage", [b"", b"\xff\xfe\x00garbage", b"{[", b"\x80"])
    def test_garbage_is_rejected_not_returned(
        self, serializers: Serializers, spec: SerializerSpec, garbage: bytes
    ) -> None:
        accept = frozenset({spec.content_type})
        try:
            value = serializers.loads(garbage, spec.content_type, accept)
        except MessageRejected as exc:
            assert exc.reason == "decode"
        else:  # a few formats give a meaning to some of these bytes; it must be a plain value
            assert value is None or isinstance(value, (int, float, str, bytes, list, dict))

    def test_not_decoded_unless_accepted(self, serializers: Serializers, spec: SerializerSpec) -> None:
        with pytest.raises(ContentDisallowed):
            serializers.loads(spec.dumps([1]), spec.content_type, frozenset({"text/x-other"}))

    def test_a_worker_runs_tasks_sent_in_it_when_accepted(self, kq_app: App, spec: SerializerSpec) -> None:
        kq_app.configure(accept_content=sorted({"json", spec.name}))
        task = kq_app.task(echo, name="kq.contract.echo")
        value = [1, "żółw", {"k": [None, True, 2.5]}]
        with worker_thread(kq_app, pool="threads", concurrency=2):
            assert task.apply_async((value,), serializer=spec.name).get(timeout=30) == value

    def test_a_worker_rejects_them_when_not_accepted(
        self, kq_app: App, spec: SerializerSpec, caplog: pytest.LogCaptureFixture
    ) -> None:
        other = "json" if spec.name != "json" else "pickle"
        kq_app.configure(accept_content=[other])
        task = kq_app.task(echo, name="kq.contract.echo")
        with worker_thread(kq_app, pool="threads", concurrency=2) as worker:
            result = task.apply_async((1,), serializer=spec.name)
            assert wait_until(lambda: worker.stats.rejected == 1, timeout=30)
            assert worker.stats.rejected_by_reason == {"content-type": 1}
        assert result.state == PENDING
        # The log says how to accept the format.
        assert f"accept_content={[other, spec.name]!r}" in caplog.text
        transport = kq_app.new_transport()
        try:
            if transport.capabilities.dead_letter:
                [dead] = drain(transport, [dead_letter_queue(kq_app.conf.task_default_queue)], 1)
                assert dead.envelope.headers["id"] == result.id
                assert dead.envelope.content_type == spec.content_type
        finally:
            transport.close()
