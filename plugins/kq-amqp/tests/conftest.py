"""Fixtures for kq-amqp's tests, which all run against the real RabbitMQ at 127.0.0.1:5672.

Tests delete the queues they create (:func:`queue_name`); delay queues expire by themselves a
minute after their last use. The contract's fan-out test leaves its exchanges behind, so the
session ends by deleting unused exchanges named like them (``if_unused``: another test run's,
still bound, survives).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import amqp
import pytest

from kq.testing.servers import reachable, require

URL = "amqp://guest:guest@127.0.0.1:5672//"
BROADCAST_PREFIX = "kq-contract-bcast-"


@pytest.fixture(scope="session", autouse=True)
def _delete_broadcast_exchanges() -> Iterator[None]:
    yield
    if not reachable("127.0.0.1", 5672):
        return
    listing = subprocess.run(
        ["rabbitmqctl", "list_exchanges", "-q", "--no-table-headers", "name"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    connection = amqp.Connection("127.0.0.1:5672")
    connection.connect()
    try:
        channel = connection.channel()
        for name in listing.stdout.split():
            if name.startswith(BROADCAST_PREFIX):
                try:
                    channel.exchange_delete(name, if_unused=True)
                except amqp.exceptions.PreconditionFailed:
                    pass  # in use by a test run that is not over (py-amqp reopens the channel)
    finally:
        connection.close()


@pytest.fixture
def amqp_url() -> str:
    require("rabbitmq")
    return URL


@pytest.fixture
def admin(amqp_url: str) -> Iterator[amqp.Channel]:
    """A plain py-amqp channel, for looking at RabbitMQ behind the transport's back."""
    connection = amqp.Connection("127.0.0.1:5672")
    connection.connect()
    try:
        yield connection.channel()
    finally:
        connection.close()


@pytest.fixture
def queue_name(admin: amqp.Channel) -> Iterator[Callable[[], str]]:
    """``queue_name()``: a fresh queue name; it and its ``.dlq`` are deleted after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"kq-amqp-test-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        admin.queue_delete(name)
        admin.queue_delete(f"{name}.dlq")


@pytest.fixture
def close_from_server(amqp_url: str) -> Callable[[Any], None]:
    """``close_from_server(connection)``: make RabbitMQ close a kombu connection the way a
    restart would (``connection.close`` 320 CONNECTION_FORCED, then the socket goes)."""
    return _close_from_server


def _close_from_server(connection: Any) -> None:
    port = connection.connection.sock.getsockname()[1]
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "peer_port"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for line in listing.stdout.splitlines():
        pid, _, peer_port = line.rpartition("\t")
        if peer_port.strip() == str(port):
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid.strip(), "kq test"],
                capture_output=True,
                timeout=120,
                check=True,
            )
            return
    raise AssertionError(f"no RabbitMQ connection from port {port}")
