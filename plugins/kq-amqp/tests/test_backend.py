"""What the rpc:// backend does beyond the contract suite, against the real RabbitMQ: results
reach only the client named in ``reply_to``, which buffers other tasks' results by id."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import amqp
import pytest

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.states import STARTED, SUCCESS
from kq_amqp.backend import RpcBackend, broker_url_of


@pytest.fixture
def make(amqp_url: str) -> Iterator[Callable[[], RpcBackend]]:
    made: list[RpcBackend] = []

    def make_backend() -> RpcBackend:
        made.append(RpcBackend("rpc+" + amqp_url))
        return made[-1]

    yield make_backend
    for backend in made:
        backend.close()


def reply(to: str, state: str = SUCCESS, task_id: str = "") -> StoredResult:
    task_id = task_id or uuid.uuid4().hex
    return StoredResult(task_id, state, f"{state} {task_id}".encode(), reply_to=to)


def read(result: StoredResult) -> StoredResult:
    """What the client reads back: the same result, without the routing."""
    return StoredResult(result.task_id, result.state, result.payload)


def test_results_come_back_to_the_client_and_others_are_buffered(
    make: Callable[[], RpcBackend],
) -> None:
    client, worker = make(), make()
    queue = client.reply_queue()
    assert queue.startswith("kq.reply.") and client.reply_queue() == queue
    first, second = reply(queue), reply(queue)
    worker.store_many([reply(queue, STARTED, first.task_id), first, second], ttl=60)
    assert client.wait(second.task_id, timeout=10) == read(second)
    assert client.get(first.task_id) == read(first)  # arrived earlier, kept by id
    client.forget(first.task_id)
    assert client.get(first.task_id) is None
    assert client.get(second.task_id) == read(second)


def test_the_reply_queue_is_the_clients_alone_and_goes_away_with_it(
    make: Callable[[], RpcBackend],
    admin: amqp.Channel,
) -> None:
    client = make()
    queue = client.reply_queue()
    with pytest.raises(amqp.exceptions.ResourceLocked):
        admin.queue_declare(queue, passive=True)
    client.close()
    with pytest.raises(amqp.exceptions.NotFound):
        admin.queue_declare(queue, passive=True)
    make().store(reply(queue), ttl=60)  # a result for a client that is gone: dropped quietly


def test_results_without_a_reply_queue_are_dropped_with_one_log_line(
    make: Callable[[], RpcBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stray = StoredResult("t-stray", SUCCESS, b"x")
    with caplog.at_level(logging.WARNING, logger="kq.amqp"):
        make().store(stray, ttl=60)
    [record] = caplog.records
    assert "t-stray" in record.getMessage()


def test_many_threads_wait_for_their_own_results(make: Callable[[], RpcBackend]) -> None:
    client, worker = make(), make()
    queue = client.reply_queue()
    results = [reply(queue) for _ in range(40)]
    found: dict[str, StoredResult | None] = {}

    def wait_for(task_ids: list[str]) -> None:
        for task_id in task_ids:
            found[task_id] = client.wait(task_id, timeout=30)

    threads = [
        threading.Thread(target=wait_for, args=([r.task_id for r in results[i::4]],)) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    worker.store_many(results[::-1], ttl=60)
    for thread in threads:
        thread.join(60)
    assert found == {r.task_id: read(r) for r in results}


def test_the_client_reconnects_and_declares_its_queue_again(
    make: Callable[[], RpcBackend],
    close_from_server: Callable[[Any], None],
) -> None:
    client, worker = make(), make()
    queue = client.reply_queue()
    close_from_server(client._connection)  # RabbitMQ deletes the exclusive queue with it
    assert client.reply_queue() == queue  # notices, reconnects, declares it again
    result = reply(queue)
    worker.store(result, ttl=60)
    assert client.wait(result.task_id, timeout=10) == read(result)


def test_unreachable_broker_raises_backend_unavailable_without_the_password() -> None:
    backend = RpcBackend("rpc+amqp://guest:s3cret@127.0.0.1:1//")
    calls: list[Callable[[], Any]] = [
        backend.reply_queue,
        lambda: backend.get("t"),
        lambda: backend.wait("t", 1),
        lambda: backend.store(reply("kq.reply.x"), 60),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailable, match=r"amqp://guest:\*\*@127\.0\.0\.1:1//") as info:
            call()
        assert "s3cret" not in str(info.value)


def test_rpc_urls() -> None:
    assert broker_url_of("rpc+amqp://u:p@h:5672/v", {}) == "amqp://u:p@h:5672/v"
    assert broker_url_of("rpc+amqps://h//", {}) == "amqps://h//"
    assert broker_url_of("rpc://", {"broker_url": "amqp://h//"}) == "amqp://h//"
    with pytest.raises(ConfigurationError, match="result_backend_options"):
        broker_url_of("rpc://", {})
    with pytest.raises(ConfigurationError, match="result_backend_options"):
        broker_url_of("rpc://", {"broker_url": "redis://h/0"})
    with pytest.raises(ConfigurationError, match="rpc\\+amqp://"):
        broker_url_of("rpc://h:5672//", {})
