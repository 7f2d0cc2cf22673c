"""Signed messages end to end, on the real Redis and the real RabbitMQ: a client signs, a worker
that holds only the trusted certificates runs what it signed, and refuses (dead-letters, reason
``untrusted``) a message flipped on the broker, an unsigned one and one signed by a stranger,
then goes on running signed tasks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from kq import App
from kq.protocol import TaskMessage, encode_task
from kq.states import PENDING
from kq.testing.contracts.pool import wait_until
from kq.testing.contracts.transport import drain
from kq.testing.worker import worker_thread
from kq.transport import REJECT_REASON_HEADER, dead_letter_queue


@attrs.frozen
class Apps:
    client: App  # signs with the key the worker trusts
    worker: App  # holds only cert_store
    plain: App  # signs nothing
    stranger: App  # signs with a key the worker does not trust


@pytest.fixture(params=["redis", "amqp"])
def apps(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_identity: Callable[..., Any],
    make_store: Callable[..., Path],
) -> Iterator[Apps]:
    broker = request.getfixturevalue(f"{request.param}_broker")
    common = {**broker, "result_backend": f"sqlite:///{tmp_path / 'results.sqlite3'}"}
    ours, theirs = make_identity("client"), make_identity("stranger", "ed25519")
    made = Apps(
        client=App("auth-client", **common, message_signer="x509", message_signer_options=ours.signing()),
        worker=App(
            "auth-worker",
            **common,
            message_signer="x509",
            message_signer_options={"cert_store": str(make_store(ours))},
        ),
        plain=App("auth-plain", **common),
        stranger=App(
            "auth-stranger", **common, message_signer="x509", message_signer_options=theirs.signing()
        ),
    )
    yield made
    for app in attrs.astuple(made, recurse=False):
        app.close()


def flipped_on_the_broker(app: App, queue: str) -> str:
    """Publish a task message ``app`` signed, with one body byte flipped; return its id."""
    message = TaskMessage(id=str(uuid.uuid4()), task="auth.add", args=(1, 1))
    sealed = app.codec.seal(encode_task(message, app.serializers, "json"))
    middle = len(sealed.body) // 2
    body = sealed.body[:middle] + bytes([sealed.body[middle] ^ 0x01]) + sealed.body[middle + 1 :]
    transport = app.new_transport()
    try:
        transport.publish(queue, attrs.evolve(sealed, body=body))
    finally:
        transport.close()
    return message.id


def test_signed_tasks_run_and_forged_ones_are_dead_lettered(apps: Apps) -> None:
    @apps.worker.task(name="auth.add")
    def add(x: int, y: int) -> int:
        return x + y

    queue = apps.client.conf.task_default_queue
    with worker_thread(apps.worker, pool="threads", concurrency=2) as worker:
        assert apps.client.send_task("auth.add", (2, 3)).get(timeout=30) == 5
        # Signed after compressing, verified before inflating.
        assert apps.client.send_task("auth.add", (20, 22), compression="zlib").get(timeout=30) == 42
        refused = {
            flipped_on_the_broker(apps.client, queue): "bad signature",
            apps.plain.send_task("auth.add", (4, 4)).id: "unsigned message",
            apps.stranger.send_task("auth.add", (5, 5)).id: "which is not in cert_store",
        }
        # RabbitMQ's delay queue adds x-death headers on the way: still trusted.
        delayed = apps.client.send_task("auth.add", (6, 7), countdown=1)
        assert apps.client.send_task("auth.add", (10, 10)).get(timeout=30) == 20
        assert delayed.get(timeout=30) == 13
        assert wait_until(lambda: worker.stats.rejected_by_reason.get("untrusted", 0) == 3, 30)
    assert worker.stats.rejected_by_reason == {"untrusted": 3}
    transport = apps.client.new_transport()
    try:
        dead = drain(transport, [dead_letter_queue(queue)], 3, timeout=30)
    finally:
        transport.close()
    reasons = {d.envelope.headers["id"]: d.envelope.headers[REJECT_REASON_HEADER] for d in dead}
    assert set(reasons) == set(refused)
    for task_id, says in refused.items():
        assert reasons[task_id].startswith("untrusted: ") and says in reasons[task_id]
        assert apps.client.AsyncResult(task_id).state == PENDING
