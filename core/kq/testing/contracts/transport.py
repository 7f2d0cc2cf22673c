"""The transport contract: what every broker plugin must do, checked against the real broker.

Use it by subclassing and giving the broker's URL::

    from kq.testing.contracts import TransportContract

    class TestMyTransport(TransportContract):
        @pytest.fixture
        def transport_url(self):
            return "mybroker://127.0.0.1:1234/0"

A transport that declares ``visibility_timeout`` must also override
``visibility_timeout_options`` to return options that make the timeout about one second.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kq.plugins import get_plugins
from kq.protocol import utcnow
from kq.transport import (
    ORIGINAL_QUEUE_HEADER,
    REJECT_REASON_HEADER,
    REJECTED_AT_HEADER,
    Delivery,
    Envelope,
    Transport,
    TransportSpec,
    dead_letter_queue,
)


def envelope(n: int = 0, **kw: Any) -> Envelope:
    """A small test message whose body carries ``n``."""
    kw.setdefault("headers", {"n": n, "task": "contract.test", "id": uuid.uuid4().hex})
    return Envelope(body=f'{{"n": {n}}}'.encode(), content_type="application/json", **kw)


def body_n(delivery: Delivery) -> int:
    return int(delivery.envelope.headers["n"])


def drain(
    transport: Transport, queues: list[str], expected: int, timeout: float = 10.0, ack: bool = True
) -> list[Delivery]:
    """Fetch until ``expected`` messages arrived or ``timeout`` passed."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        batch = transport.fetch(queues, expected - len(got), 0.5)
        if ack and batch:
            transport.ack(batch)
        got.extend(batch)
    return got


class TransportContract:
    """Tests every transport plugin must pass. Subclasses provide ``transport_url``."""

    @pytest.fixture
    def transport_url(self) -> str:
        raise NotImplementedError("a TransportContract subclass must provide transport_url")

    @pytest.fixture
    def transport_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def visibility_timeout_options(self) -> dict[str, Any]:
        raise NotImplementedError(
            "this transport declares visibility_timeout: override visibility_timeout_options "
            "to return options that make the timeout about one second"
        )

    @pytest.fixture
    def transport_spec(self, transport_url: str) -> TransportSpec:
        return get_plugins().transport_for(transport_url)

    @pytest.fixture
    def make_transport(
        self, transport_url: str, transport_options: dict[str, Any], transport_spec: TransportSpec
    ) -> Iterator[Callable[..., Transport]]:
        made: list[Transport] = []

        def make(**options: Any) -> Transport:
            transport = transport_spec.factory(transport_url, {**transport_options, **options})
            made.append(transport)
            return transport

        yield make
        for transport in made:
            try:
                transport.close()
            except Exception:
                pass

    @pytest.fixture
    def transport(self, make_transport: Callable[..., Transport]) -> Transport:
        return make_transport()

    @pytest.fixture
    def queue(self, make_transport: Callable[..., Transport]) -> Iterator[str]:
        name = f"kq-contract-{uuid.uuid4().hex[:10]}"
        yield name
        cleaner = make_transport()
        cleaner.purge(name)
        cleaner.purge(dead_letter_queue(name))

    @pytest.fixture
    def other_queue(self, make_transport: Callable[..., Transport]) -> Iterator[str]:
        name = f"kq-contract-{uuid.uuid4().hex[:10]}"
        yield name
        make_transport().purge(name)

    # -- basics ---------------------------------------------------------------------------

    def test_spec_is_declared_with_schemes(self, transport_spec: TransportSpec) -> None:
        assert transport_spec.schemes
        assert all(isinstance(s, str) and s == s.lower() for s in transport_spec.schemes)

    def test_transport_agrees_with_its_spec(
        self, transport_spec: TransportSpec, transport: Transport
    ) -> None:
        # A lazy factory cannot lend the spec its class's capabilities: both must name the same.
        assert transport.capabilities == transport_spec.capabilities, "the class and the spec disagree"

    def test_a_text_body_comes_back_as_bytes(self, transport: Transport, queue: str) -> None:
        # Client libraries may decode a body valid in its content_encoding (py-amqp does);
        # signatures and decompression need the very bytes that were sent.
        sent = Envelope(body="żółw ✓".encode(), content_type="text/plain", content_encoding="utf-8")
        transport.publish(queue, sent)
        [got] = drain(transport, [queue], 1)
        assert type(got.envelope.body) is bytes and got.envelope.body == sent.body

    def test_a_compressed_body_comes_back_compressed(self, transport: Transport, queue: str) -> None:
        # kombu inflates bodies with a compression header it knows; kq inflates them itself,
        # after checking signatures and with a size limit.
        sent = Envelope(
            body=zlib.compress(b"[[], {}, {}]" * 100),
            content_type="application/json",
            headers={"compression": "application/x-gzip"},
        )
        transport.publish(queue, sent)
        [got] = drain(transport, [queue], 1)
        assert got.envelope.body == sent.body
        assert got.envelope.headers["compression"] == "application/x-gzip"

    def test_roundtrip_keeps_every_field(self, transport: Transport, queue: str) -> None:
        sent = Envelope(
            body=bytes(range(256)),
            content_type="application/octet-stream",
            content_encoding="binary",
            headers={"task": "t", "id": "abc", "nested": {"a": [1, 2, None]}, "text": "żółw ✓"},
            correlation_id="abc",
            reply_to="replies",
        )
        transport.publish(queue, sent)
        [got] = drain(transport, [queue], 1)
        assert got.queue == queue
        env = got.envelope
        assert env.body == sent.body
        assert env.content_type == sent.content_type
        assert env.content_encoding == sent.content_encoding
        assert dict(env.headers) == dict(sent.headers)
        assert env.correlation_id == "abc"
        assert env.reply_to == "replies"

    def test_fetch_on_empty_queue_returns_empty_after_timeout(self, transport: Transport, queue: str) -> None:
        start = time.monotonic()
        assert transport.fetch([queue], 10, 0.3) == []
        elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 5.0

    def test_fetch_wakes_up_for_a_message_published_while_waiting(
        self, make_transport: Callable[..., Transport], queue: str
    ) -> None:
        consumer, producer = make_transport(), make_transport()
        consumer.fetch([queue], 1, 0.05)  # declare and warm up
        timer = threading.Timer(0.3, producer.publish, args=(queue, envelope(7)))
        timer.start()
        try:
            got = drain(consumer, [queue], 1, timeout=5)
        finally:
            timer.join()
        assert [body_n(d) for d in got] == [7]

    def test_order_within_a_queue_is_kept(self, transport: Transport, queue: str) -> None:
        for n in range(20):
            transport.publish(queue, envelope(n))
        got = drain(transport, [queue], 20)
        assert [body_n(d) for d in got] == list(range(20))

    def test_publish_many_and_fetch_limit(self, transport: Transport, queue: str) -> None:
        transport.publish_many((queue, envelope(n)) for n in range(50))
        first = transport.fetch([queue], 7, 2.0)
        assert 1 <= len(first) <= 7
        transport.ack(first)
        rest = drain(transport, [queue], 50 - len(first))
        assert sorted(body_n(d) for d in first + rest) == list(range(50))

    def test_depth_counts_ready_messages_and_purge_empties(
        self, transport_spec: TransportSpec, transport: Transport, queue: str
    ) -> None:
        exact = transport_spec.capabilities.exact_depth
        assert transport.depth(queue) == 0 if exact else transport.depth(queue) >= -1
        transport.publish_many((queue, envelope(n)) for n in range(5))
        if exact:
            assert transport.depth(queue) == 5
            assert transport.purge(queue) == 5
            assert transport.depth(queue) == 0
        else:  # a broker that cannot count: purge still empties the queue
            # of what was published before it by the broker's clock (Pub/Sub seeks to "now")
            time.sleep(0.2)
            transport.purge(queue)
        assert transport.fetch([queue], 10, 0.2) == []

    def test_several_queues_are_all_served(self, transport: Transport, queue: str, other_queue: str) -> None:
        transport.publish(queue, envelope(1))
        transport.publish(other_queue, envelope(2))
        got = drain(transport, [queue, other_queue], 2)
        assert {(d.queue, body_n(d)) for d in got} == {(queue, 1), (other_queue, 2)}

    # -- ownership: ack, reject, redelivery ----------------------------------------------

    def test_acked_message_is_gone_for_everyone(
        self, make_transport: Callable[..., Transport], queue: str
    ) -> None:
        first = make_transport()
        first.publish(queue, envelope(1))
        got = drain(first, [queue], 1)
        first.ack(got)  # acking twice is harmless
        first.close()
        assert make_transport().fetch([queue], 10, 0.5) == []

    def test_ack_and_fetch_acks_first_and_fetches_the_rest(
        self, make_transport: Callable[..., Transport], queue: str
    ) -> None:
        first = make_transport()
        first.publish_many((queue, envelope(n)) for n in range(4))
        started = drain(first, [queue], 2, ack=False)
        rest = first.ack_and_fetch(started, [queue], 10, 2.0)
        rest += drain(first, [queue], 2 - len(rest), ack=False) if len(rest) < 2 else []
        assert sorted(body_n(d) for d in started + rest) == [0, 1, 2, 3]
        # The acks held even though this fetch times out; closing returns only the unacked.
        assert first.ack_and_fetch(rest[:1], [queue], 10, 0.3) == []
        first.close()
        again = drain(make_transport(), [queue], 1)
        assert [body_n(d) for d in again] == [body_n(rest[1])]

    def test_unacked_message_comes_back_when_consumer_closes(
        self, make_transport: Callable[..., Transport], queue: str
    ) -> None:
        first = make_transport()
        first.publish(queue, envelope(1))
        [got] = drain(first, [queue], 1, ack=False)
        assert body_n(got) == 1
        first.close()
        again = drain(make_transport(), [queue], 1)
        assert [body_n(d) for d in again] == [1]

    def test_fetched_message_is_not_given_to_a_second_consumer(
        self, make_transport: Callable[..., Transport], queue: str
    ) -> None:
        first, second = make_transport(), make_transport()
        first.publish(queue, envelope(1))
        got = drain(first, [queue], 1, ack=False)
        assert len(got) == 1
        assert second.fetch([queue], 10, 0.5) == []
        first.ack(got)

    def test_reject_with_requeue_gives_the_message_back(self, transport: Transport, queue: str) -> None:
        transport.publish(queue, envelope(3))
        [got] = drain(transport, [queue], 1, ack=False)
        transport.reject(got, requeue=True, reason="test")
        again = drain(transport, [queue], 1)
        assert [body_n(d) for d in again] == [3]

    def test_reject_without_requeue_removes_the_message(
        self, transport_spec: TransportSpec, transport: Transport, queue: str
    ) -> None:
        transport.publish(queue, envelope(4))
        [got] = drain(transport, [queue], 1, ack=False)
        transport.reject(got, requeue=False, reason="malformed: test")
        assert transport.fetch([queue], 10, 0.5) == []
        if transport_spec.capabilities.exact_depth:
            assert transport.depth(queue) == 0

    def test_concurrent_consumers_get_each_message_exactly_once(
        self, make_transport: Callable[..., Transport], queue: str
    ) -> None:
        total = 400
        make_transport().publish_many((queue, envelope(n)) for n in range(total))
        seen: list[int] = []
        lock = threading.Lock()

        def consume() -> None:
            transport = make_transport()
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 1.5:
                batch = transport.fetch([queue], 16, 0.2)
                if batch:
                    transport.ack(batch)
                    with lock:
                        seen.extend(body_n(d) for d in batch)
                    idle_since = time.monotonic()

        threads = [threading.Thread(target=consume) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(seen) == list(range(total))

    # -- optional capabilities: each is tested when declared ------------------------------

    def test_priorities(self, transport_spec: TransportSpec, transport: Transport, queue: str) -> None:
        if not transport_spec.capabilities.priorities:
            pytest.skip("transport does not declare priorities")
        for n, priority in enumerate([0, 9, 5, 9, 1]):
            transport.publish(queue, envelope(n, priority=priority))
        got = drain(transport, [queue], 5)
        assert [d.envelope.priority for d in got] == [9, 9, 5, 1, 0]
        assert [body_n(d) for d in got][:2] == [1, 3]  # FIFO within a priority

    def test_native_delay_holds_message_until_due(
        self, transport_spec: TransportSpec, transport: Transport, queue: str
    ) -> None:
        if not transport_spec.capabilities.native_delay:
            pytest.skip("transport does not declare native_delay")
        transport.publish(queue, envelope(1), eta=utcnow() + timedelta(seconds=1.5))
        transport.publish(queue, envelope(2))
        assert [body_n(d) for d in drain(transport, [queue], 1)] == [2]
        assert transport.fetch([queue], 10, 0.5) == []
        got = drain(transport, [queue], 1, timeout=5)
        assert [body_n(d) for d in got] == [1]

    def test_visibility_timeout_returns_unacked_message(
        self,
        transport_spec: TransportSpec,
        make_transport: Callable[..., Transport],
        queue: str,
        request: pytest.FixtureRequest,
    ) -> None:
        if not transport_spec.capabilities.visibility_timeout:
            pytest.skip("transport does not declare visibility_timeout")
        options = request.getfixturevalue("visibility_timeout_options")
        holder, other = make_transport(**options), make_transport(**options)
        holder.publish(queue, envelope(5))
        assert len(drain(holder, [queue], 1, ack=False)) == 1
        # The holder stays open and never acks: the message must come back by itself.
        got = drain(other, [queue], 1, timeout=10)
        assert [body_n(d) for d in got] == [5]
        assert got[0].redelivered

    def test_disconnect_keeps_leases_for_a_new_instance_to_ack(
        self,
        transport_spec: TransportSpec,
        make_transport: Callable[..., Transport],
        queue: str,
    ) -> None:
        if not transport_spec.capabilities.visibility_timeout:
            pytest.skip("deliveries of transports without visibility_timeout die with their connection")
        first = make_transport()
        first.publish(queue, envelope(11))
        got = drain(first, [queue], 1, ack=False)
        first.disconnect()  # what the worker does after BrokerUnavailable
        second = make_transport()
        assert second.fetch([queue], 10, 0.5) == []  # still leased: not given to anyone
        second.ack(got)
        assert second.depth(queue) == 0 and second.fetch([queue], 10, 0.3) == []

    def test_dead_letter_keeps_rejected_messages(
        self, transport_spec: TransportSpec, transport: Transport, queue: str
    ) -> None:
        if not transport_spec.capabilities.dead_letter:
            pytest.skip("transport does not declare dead_letter")
        sent = envelope(6, priority=3, correlation_id="c-6", reply_to="replies")
        transport.publish(queue, sent)
        [got] = drain(transport, [queue], 1, ack=False)
        before = datetime.now(timezone.utc)
        transport.reject(got, requeue=False, reason="unknown-task: contract")
        dlq = dead_letter_queue(queue)
        try:
            [dead] = drain(transport, [dlq], 1)
            assert dead.queue == dlq
            env = dead.envelope
            assert (env.body, env.content_type, env.content_encoding) == (
                sent.body,
                sent.content_type,
                sent.content_encoding,
            )
            assert (env.correlation_id, env.reply_to) == (sent.correlation_id, sent.reply_to)
            extra = {REJECT_REASON_HEADER: "unknown-task: contract", ORIGINAL_QUEUE_HEADER: queue}
            headers = dict(env.headers)
            rejected_at = datetime.fromisoformat(headers.pop(REJECTED_AT_HEADER))
            assert rejected_at >= before - timedelta(seconds=1) and rejected_at.tzinfo
            # Brokers may add their own (RabbitMQ's x-death); the message's and kq's are exact.
            assert {k: headers[k] for k in (*sent.headers, *extra)} == {**sent.headers, **extra}
            assert transport.depth(queue) == 0 and transport.fetch([queue], 1, 0.2) == []
        finally:
            transport.purge(dlq)

    def test_fanout_reaches_every_subscriber(
        self, transport_spec: TransportSpec, make_transport: Callable[..., Transport]
    ) -> None:
        if not transport_spec.capabilities.fanout:
            pytest.skip("transport does not declare fanout")
        channel = f"kq-contract-bcast-{uuid.uuid4().hex[:8]}"
        a, b, sender = make_transport(), make_transport(), make_transport()
        qa, qb = a.subscribe(channel), b.subscribe(channel)
        assert qa != qb
        sender.broadcast(channel, envelope(8))
        assert [body_n(d) for d in drain(a, [qa], 1)] == [8]
        assert [body_n(d) for d in drain(b, [qb], 1)] == [8]
        a.unsubscribe(qa)
        sender.broadcast(channel, envelope(9))
        assert [body_n(d) for d in drain(b, [qb], 1)] == [9]
        assert a.fetch([qa], 1, 0.3) == []
        b.unsubscribe(qb)
