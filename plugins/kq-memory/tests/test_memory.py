"""What kq-memory and the kernel's kombu adapter do beyond the contract suites."""

from __future__ import annotations

import time
import uuid

import pytest

from kq.backend import StoredResult
from kq.config import safe_url
from kq.exceptions import BrokerUnavailable, PluginError
from kq.kombu_transport import KombuTransport
from kq.protocol import utcnow
from kq.testing.contracts.transport import envelope
from kq.testing.imports import imported_on_load
from kq_memory.backend import MemoryBackend
from kq_memory.transport import MemoryTransport


def test_connection_failure_names_the_url_but_not_the_password() -> None:
    # Nothing listens on port 1, so py-amqp is refused at once; no broker is involved.
    transport = KombuTransport("pyamqp://guest:s3cret@127.0.0.1:1//")
    with pytest.raises(BrokerUnavailable, match=r"pyamqp://guest:\*\*@127\.0\.0\.1:1//") as info:
        transport.depth("anything")
    assert "s3cret" not in str(info.value)


def test_safe_url_masks_every_url_of_a_failover_list() -> None:
    assert safe_url("amqp://u:p@a//;amqp://u:p@b//") == "amqp://u:**@a//;amqp://u:**@b//"
    assert safe_url("memory://") == "memory://"


def test_eta_is_refused_without_native_delay() -> None:
    with pytest.raises(PluginError, match="no native delay"):
        MemoryTransport("memory://").publish("q", envelope(), eta=utcnow())


def test_prefetch_count_bounds_unacked_messages() -> None:
    queue = f"kq-memory-{uuid.uuid4().hex[:10]}"
    transport = MemoryTransport("memory://", {"prefetch_count": 2})
    try:
        transport.publish_many((queue, envelope(n)) for n in range(5))
        first = transport.fetch([queue], 5, 0.5)
        assert len(first) == 2
        assert transport.fetch([queue], 5, 0.1) == []  # held back until something is acked
        transport.ack(first)
        assert len(transport.fetch([queue], 5, 0.5)) == 2
    finally:
        transport.purge(queue)
        transport.close()


def test_cleanup_deletes_expired_results_and_counts_them() -> None:
    backend = MemoryBackend("memory://")
    ids = [uuid.uuid4().hex for _ in range(3)]
    backend.store_many([StoredResult(i, "SUCCESS", b"x") for i in ids], ttl=0.01)
    time.sleep(0.05)
    assert backend.cleanup() >= 3  # the store is process-wide: other tests may add to it
    assert all(backend.get(i) is None for i in ids)


def test_loading_the_plugin_leaves_kombu_for_the_first_broker() -> None:
    assert imported_on_load("kq_memory", "kq_memory.transport", "kq_memory.backend") == ["kq_memory"]
