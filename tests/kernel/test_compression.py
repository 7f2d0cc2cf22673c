"""The built-in compressions pass the same contract as any compression plugin, and the codec
applies them, the size limits and the setting on the way out and in."""

import attrs
import pytest

from kq import App
from kq.exceptions import ConfigurationError, EncodeError, MessageRejected
from kq.protocol import decode_task
from kq.task import new_message
from kq.testing.contracts import CompressionContract


@pytest.mark.parametrize("name", ["zlib", "bz2", "lzma"])
class TestBuiltin(CompressionContract):
    @pytest.fixture
    def compression_name(self, name):
        return name


def test_unknown_compression_names_what_is_installed(tmp_path):
    app = App(broker=f"sqlite:///{tmp_path}/kq.db", task_compression="brotli")
    with pytest.raises(ConfigurationError, match=r"task_compression: no compression named 'brotli'.*zlib"):
        app.check()


def test_task_compression_setting_and_per_call_option(tmp_path):
    app = App(broker=f"sqlite:///{tmp_path}/kq.db", task_compression="zlib")

    @app.task
    def echo(x):
        return x

    @app.task(compression="lzma")
    def other(x):
        return x

    sent = app._encode(new_message(echo.name, ("y" * 5000,), {}), None)
    assert sent.headers["compression"] == "application/x-gzip" and len(sent.body) < 500
    sent = app._encode(new_message(other.name, (1,), {}), None, other.compression)
    assert sent.headers["compression"] == "application/x-lzma"
    received = decode_task(app.codec.open(sent), app.serializers, app.accept)
    assert received.args == (1,)


def test_a_message_over_the_size_limit_is_refused_when_sent(tmp_path):
    app = App(broker=f"sqlite:///{tmp_path}/kq.db", message_max_size=1000)

    @app.task
    def echo(x):
        return x

    with pytest.raises(EncodeError, match="over message_max_size"):
        echo.delay("x" * 2000)
    # Compressed small, but a worker inflating it would refuse it: refused here too.
    with pytest.raises(EncodeError, match="over message_max_size"):
        echo.apply_async(("x" * 2000,), compression="zlib")


def test_long_reprs_are_cut_by_clients_and_refused_by_workers(tmp_path):
    app = App(broker=f"sqlite:///{tmp_path}/kq.db", message_max_repr=50)
    sent = app._encode(attrs.evolve(new_message("t", ("z" * 500,), {}), argsrepr="q" * 500), None)
    assert len(sent.headers["argsrepr"]) == 50 and len(sent.headers["kwargsrepr"]) <= 50
    hostile = attrs.evolve(sent, headers={**sent.headers, "argsrepr": "q" * 51})
    with pytest.raises(MessageRejected) as caught:
        app.codec.open(hostile)
    assert caught.value.reason == "over-limit"


def test_a_deeply_nested_workflow_is_refused(tmp_path):
    app = App(broker=f"sqlite:///{tmp_path}/kq.db", message_max_depth=10)
    deep: dict = {"task": "t", "args": [], "kwargs": {}, "options": {}}
    for _ in range(10):
        deep = {"task": "t", "args": [], "kwargs": {}, "options": {"link": [deep]}}
    sent = app._encode(new_message("t", (), {}, link=[deep]), None)
    with pytest.raises(MessageRejected, match="message_max_depth") as caught:
        decode_task(sent, app.serializers, app.accept, app.codec.limits.max_depth)
    assert caught.value.reason == "over-limit"
    shallow = app._encode(
        new_message("t", (), {}, link=[{"task": "t", "args": [], "kwargs": {}, "options": {}}]), None
    )
    assert decode_task(shallow, app.serializers, app.accept, 10).callbacks
