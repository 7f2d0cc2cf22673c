"""Hooks reached through the plugin manager, as a third-party plugin implements them.

Each test registers a small plugin object with ``@hookimpl`` methods (the way an entry-point
module is registered) and drives kq for real: a publish, the ``kq`` script, a worker on the
test SQLite broker. Together with the other tests they leave no hookspec untested
(tests/kernel/test_hookspecs_documented.py checks that every hook is named by some test).
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import click
import pytest

from kq import App, hookimpl
from kq.cli import cli, main
from kq.codec import Signer, SignerSpec
from kq.exceptions import MessageRejected
from kq.plugins import get_plugins
from kq.testing.contracts.pool import wait_until
from kq.testing.worker import worker_thread
from kq.transport import Delivery

SIGNATURE_HEADER = "x-hooktest-hmac"


@pytest.fixture
def register() -> Iterator[Any]:
    """``register(plugin)``: a plugin object for the duration of the test."""
    names: list[str] = []

    def add(plugin: object) -> None:
        name = f"hooktest-{len(names)}-{id(plugin)}"
        get_plugins().register(plugin, name)
        names.append(name)

    yield add
    for name in names:
        get_plugins().unregister(name)


class PublishRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    @hookimpl
    def kq_before_publish(self, message: Any, queue: str) -> None:
        self.calls.append(("before", message.id, queue))

    @hookimpl
    def kq_after_publish(self, app: App, message: Any, queue: str) -> None:
        assert isinstance(app, App)
        self.calls.append(("after", message.id, queue))


def test_kq_after_publish_follows_each_publish(register: Any) -> None:
    recorder = PublishRecorder()
    register(recorder)
    app = App("hooktest", broker="memory://", backend=None)
    try:
        first = app.send_task("hooktest.one", (1,))
        second = app.send_task("hooktest.two", queue="elsewhere")
    finally:
        app.close()
    assert recorder.calls == [
        ("before", first.id, "celery"),
        ("after", first.id, "celery"),
        ("before", second.id, "elsewhere"),
        ("after", second.id, "elsewhere"),
    ]


@click.command("hooktest-hello")
@click.option("--name", default="world")
def hello(name: str) -> None:
    """Say hello."""
    click.echo(f"hello {name}")


class CommandPlugin:
    @hookimpl
    def kq_cli_commands(self, cli: click.Group) -> None:
        cli.add_command(hello)


def test_kq_cli_commands_adds_a_subcommand_to_the_kq_script(
    register: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register(CommandPlugin())
    monkeypatch.setattr(sys, "argv", ["kq", "hooktest-hello", "--name", "plugins"])
    try:
        main()  # what the installed `kq` script runs
    finally:
        cli.commands.pop("hooktest-hello", None)
    assert capsys.readouterr().out == "hello plugins\n"


class HmacSigner(Signer):
    """Signs the body with a shared key (HMAC-SHA256 in a header); refuses anything else."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.key = str(options["key"]).encode()

    def _mac(self, body: bytes) -> str:
        return hmac.new(self.key, body, hashlib.sha256).hexdigest()

    def sign(self, envelope: Any) -> Any:
        return attrs.evolve(
            envelope, headers={**envelope.headers, SIGNATURE_HEADER: self._mac(envelope.body)}
        )

    def verify(self, envelope: Any) -> Any:
        headers = dict(envelope.headers)
        mac = headers.pop(SIGNATURE_HEADER, None)
        if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(envelope.body)):
            raise MessageRejected("untrusted", "no valid hooktest signature")
        return attrs.evolve(envelope, headers=headers)


class SignerPlugin:
    @hookimpl
    def kq_message_signers(self) -> list[SignerSpec]:
        return [SignerSpec(name="hooktest-hmac", factory=HmacSigner, description="test HMAC")]


class RejectionRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Delivery, str, str]] = []
        self.lock = threading.Lock()

    @hookimpl
    def kq_message_rejected(self, delivery: Delivery, reason: str, detail: str) -> None:
        with self.lock:
            self.calls.append((delivery, reason, detail))


def add(x: int, y: int) -> int:
    return x + y


def test_kq_message_signers_sign_and_kq_message_rejected_reports_a_forgery(
    register: Any, kq_app: App
) -> None:
    rejections = RejectionRecorder()
    register(SignerPlugin())
    register(rejections)
    assert get_plugins().signers.get("hooktest-hmac").factory is HmacSigner
    kq_app.configure(message_signer="hooktest-hmac", message_signer_options={"key": "right"})
    task = kq_app.task(add, name="hooktest.add")
    forger = App(
        "kq.test",
        broker=kq_app.conf.broker_url,
        backend=kq_app.conf.result_backend,
        message_signer="hooktest-hmac",
        message_signer_options={"key": "wrong"},
    )
    try:
        with worker_thread(kq_app, pool="threads", concurrency=2) as worker:
            assert task.delay(2, 3).get(timeout=30) == 5  # signed, verified, run
            forged = forger.send_task("hooktest.add", (1, 1))
            unknown = kq_app.send_task("hooktest.no-such-task")
            assert wait_until(lambda: len(rejections.calls) == 2, timeout=30)
            assert worker.stats.rejected_by_reason == {"untrusted": 1, "unknown-task": 1}
    finally:
        forger.close()
    by_reason = {reason: (delivery, detail) for delivery, reason, detail in rejections.calls}
    assert by_reason["untrusted"][0].envelope.headers["id"] == forged.id
    assert "hooktest signature" in by_reason["untrusted"][1]
    assert by_reason["unknown-task"][0].envelope.headers["id"] == unknown.id
    assert "hooktest.no-such-task" in by_reason["unknown-task"][1]


def test_kq_schedule_stores_is_how_beat_finds_its_store() -> None:
    # kq-sqlite's store comes through the hook, and the registry names the plugin it came from.
    returned = [spec for specs in get_plugins().pm.hook.kq_schedule_stores() for spec in specs]
    assert "sqlite" in {scheme for spec in returned for scheme in spec.schemes}
    provided = dict(get_plugins().schedule_stores.items())["sqlite"]
    assert provided.plugin.distribution == "kq-sqlite"
    assert provided.spec in returned
