"""The kernel's contract suites against the real RabbitMQ: ``amqp://`` and ``rpc://``."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import amqp
import attrs
import kombu
import pytest

from kq.backend import BackendSpec, StoredResult
from kq.plugins import get_plugins
from kq.testing.contracts import BackendContract, TransportContract
from kq_amqp.backend import RpcBackend


class TestAMQPTransport(TransportContract):
    @pytest.fixture
    def transport_url(self, amqp_url: str) -> str:
        return amqp_url

    # Deleted afterwards (with their dead-letter queues) rather than only purged.
    @pytest.fixture
    def queue(self, queue_name: Callable[[], str]) -> str:
        return queue_name()

    @pytest.fixture
    def other_queue(self, queue_name: Callable[[], str]) -> str:
        return queue_name()


class SharedReplyBackend(RpcBackend):
    """An rpc backend whose instances in one test all use one reply queue.

    The contract stores results without ``reply_to`` and reads them through another instance;
    an rpc result reaches only the queue named in its task message. So this stands in for the
    kernel: ``store_many`` addresses each result to the shared queue, as a task message from
    the reading client would, and the queue is not exclusive, so every instance may read it.
    """

    def __init__(self, url: str, options: dict[str, Any], *, reply_queue: str) -> None:
        super().__init__(url, options)
        self._reply_name = reply_queue

    def _reply_entity(self) -> kombu.Queue:
        return kombu.Queue(self._reply_name, durable=False, auto_delete=False)

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        super().store_many([attrs.evolve(r, reply_to=self._reply_name) for r in results], ttl)


class TestRpcBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, amqp_url: str) -> str:
        return "rpc+" + amqp_url

    @pytest.fixture
    def backend_spec(self, backend_url: str, admin: amqp.Channel) -> Iterator[BackendSpec]:
        spec = get_plugins().backend_for(backend_url)
        name = f"kq-amqp-test-reply-{uuid.uuid4().hex[:10]}"
        # It must exist before a writer stores into it, and only readers may consume it.
        admin.queue_declare(name, durable=False, auto_delete=False)
        yield attrs.evolve(spec, factory=functools.partial(SharedReplyBackend, reply_queue=name))
        admin.queue_delete(name)
