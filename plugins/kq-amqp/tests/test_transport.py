"""What the amqp:// transport does beyond the contract suite, against the real RabbitMQ."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import amqp
import pytest

from kq import App, Signature
from kq.exceptions import BrokerUnavailable, ConfigurationError
from kq.protocol import utcnow
from kq.testing.contracts.transport import body_n, drain, envelope
from kq.testing.imports import imported_on_load
from kq.transport import ORIGINAL_QUEUE_HEADER, REJECT_REASON_HEADER
from kq_amqp.confirms import PendingConfirms
from kq_amqp.transport import DELAY_PRECISION_BITS, AMQPTransport, delay_bucket


@pytest.fixture
def make(amqp_url: str) -> Iterator[Callable[..., AMQPTransport]]:
    made: list[AMQPTransport] = []

    def make_transport(**options: Any) -> AMQPTransport:
        made.append(AMQPTransport(amqp_url, options))
        return made[-1]

    yield make_transport
    for transport in made:
        transport.close()


# -- confirms -------------------------------------------------------------------------------


def test_publish_returns_once_the_queue_holds_the_message(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str]
) -> None:
    # Without confirms a passive declare right after publishing often counts fewer messages.
    transport, queue = make(), queue_name()
    for n in range(1, 31):
        transport.publish(queue, envelope(n))
        assert transport.depth(queue) == n


def test_a_publish_the_broker_refuses_raises(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str], admin: amqp.Channel
) -> None:
    queue = queue_name()
    admin.queue_declare(
        queue, durable=True, auto_delete=False, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    transport = make()
    transport.publish(queue, envelope(1))
    with pytest.raises(BrokerUnavailable, match="MessageNacked"):
        transport.publish(queue, envelope(2))  # nacked: only a confirmed publish can tell


# -- batches: one wait for the confirms of all -----------------------------------------------


def test_pending_confirms_settle_each_number_once_in_any_order() -> None:
    # As RabbitMQ answered a batch of 10 (numbers 1-10) into a reject-publish queue of length 3:
    # single nacks of 4-9, then a multiple-ack up to 3, then the nack of 10.
    pending = PendingConfirms(1, 10)
    for tag in range(4, 10):
        pending.nack(tag, multiple=False)
    pending.ack(3, multiple=True)
    assert (pending.remaining, pending.nacked) == (1, 6)
    pending.nack(10, multiple=False)
    assert (pending.remaining, pending.nacked) == (0, 7)
    # Numbers 11-14 of the next batch: answers for earlier numbers count for nothing, a
    # multiple answer covers only what is still open, and numbers past the batch are not its.
    pending = PendingConfirms(11, 4)
    pending.ack(10, multiple=True)
    pending.ack(12, multiple=False)
    pending.nack(13, multiple=True)  # 11 and 13; 12 was acked already
    pending.ack(12, multiple=False)
    assert (pending.remaining, pending.nacked) == (1, 2)
    pending.ack(20, multiple=True)
    assert (pending.remaining, pending.nacked) == (0, 2)


def test_a_batch_of_5000_is_in_the_queue_in_order_when_publish_many_returns(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
) -> None:
    publisher, queue = make(), queue_name()
    publisher.publish_many((queue, envelope(n)) for n in range(5000))
    assert publisher.depth(queue) == 5000  # confirmed: nothing is still on its way
    got = drain(make(), [queue], 5000, timeout=60)
    assert [body_n(d) for d in got] == list(range(5000))


def test_a_batch_over_several_queues_lands_in_each_in_order(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
) -> None:
    publisher, queues = make(), [queue_name() for _ in range(3)]
    publisher.publish_many((queues[n % 3], envelope(n)) for n in range(300))
    assert [publisher.depth(q) for q in queues] == [100, 100, 100]
    consumer = make()
    for i, queue in enumerate(queues):
        assert [body_n(d) for d in drain(consumer, [queue], 100)] == list(range(i, 300, 3))


def test_nacks_raise_and_later_publishes_stay_in_step(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str], admin: amqp.Channel
) -> None:
    queue = queue_name()
    admin.queue_declare(
        queue, durable=True, auto_delete=False, arguments={"x-max-length": 3, "x-overflow": "reject-publish"}
    )
    transport = make()
    with pytest.raises(BrokerUnavailable, match=rf"refused \(nacked\) 2 of 5 messages published to {queue}"):
        transport.publish_many((queue, envelope(n)) for n in range(5))
    assert transport.depth(queue) == 3  # (no consumer here: it would keep the queue short)
    transport.purge(queue)
    # The same instance again (the kernel would open a new one): batches and single publishes
    # each wait for their own confirms. A batch that is partly acked, partly nacked counts its
    # nacks exactly only if it knows which sequence numbers are its own: RabbitMQ answers with
    # multiple-acks and -nacks that would cover the wrong messages otherwise.
    transport.publish_many((queue, envelope(n)) for n in range(5, 7))
    transport.publish(queue, envelope(7))
    with pytest.raises(BrokerUnavailable, match="MessageNacked"):
        transport.publish(queue, envelope(8))
    transport.purge(queue)
    transport.publish(queue, envelope(9))
    with pytest.raises(BrokerUnavailable, match=r"refused \(nacked\) 2 of 4 messages"):
        transport.publish_many((queue, envelope(n)) for n in range(10, 14))
    transport.purge(queue)
    transport.publish_many((queue, envelope(n)) for n in range(14, 16))
    transport.publish(queue, envelope(16))
    assert [body_n(d) for d in drain(make(), [queue], 3)] == [14, 15, 16]


def test_send_many_over_a_broken_connection_publishes_the_whole_batch_again(
    amqp_url: str,
    queue_name: Callable[[], str],
    close_from_server: Callable[[Any], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("kq-amqp-test", broker=amqp_url, backend=None, task_default_queue=queue_name())
    try:
        app.send_many(Signature("t", (n,), {}, app=app) for n in range(2))  # connects
        publisher = app._publisher
        assert isinstance(publisher, AMQPTransport)
        close_from_server(publisher._connection)
        with caplog.at_level(logging.WARNING, logger="kq"):
            sent = app.send_many(Signature("t", (n,), {}, app=app) for n in range(2, 1002))
        assert "publish of 1000 messages failed" in caplog.text and "CONNECTION_FORCED" in caplog.text
        consumer = app.new_transport()
        try:
            got = drain(consumer, [app.conf.task_default_queue], 1002, timeout=60)
        finally:
            consumer.close()
        assert {d.envelope.headers["id"] for d in got} >= {r.id for r in sent}
    finally:
        app.close()


def test_without_confirms_a_batch_is_published_one_by_one(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
    admin: amqp.Channel,
) -> None:
    queue = queue_name()
    admin.queue_declare(
        queue, durable=True, auto_delete=False, arguments={"x-max-length": 3, "x-overflow": "reject-publish"}
    )
    transport = make(confirm_publish=False)
    transport.publish_many((queue, envelope(n)) for n in range(5))  # nacks go unnoticed
    assert [body_n(d) for d in drain(transport, [queue], 3)] == [0, 1, 2]


# -- queue arguments: priorities, dead letters, existing queues, quorum ---------------------


def test_rejected_message_is_dead_lettered_with_kqs_reason(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    transport, queue = make(), queue_name()
    transport.publish(queue, envelope(1, priority=3))
    [got] = drain(transport, [queue], 1, ack=False)
    with caplog.at_level(logging.WARNING, logger="kq.amqp"):
        transport.reject(got, requeue=False, reason="unknown-task: test")
        [dead] = drain(transport, [f"{queue}.dlq"], 1)
    assert caplog.text == ""  # the dead-letter queue is declared as it was, without a 406
    assert body_n(dead) == 1 and dead.envelope.priority == 3
    headers = dead.envelope.headers
    assert headers[REJECT_REASON_HEADER] == "unknown-task: test"
    assert headers[ORIGINAL_QUEUE_HEADER] == queue
    assert "x-death" not in headers  # a copy kq published, not RabbitMQ's dead-lettering
    assert transport.depth(queue) == 0


def test_what_rabbitmq_dead_letters_itself_still_reaches_the_dead_letter_queue(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
    admin: amqp.Channel,
) -> None:
    transport, queue = make(), queue_name()
    transport.publish(queue, envelope(1))  # declares the queue with its dead-letter route
    drain(transport, [queue], 1)
    admin.basic_publish(
        amqp.Message(b"{}", expiration="1", application_headers={"n": 2}), exchange="", routing_key=queue
    )  # a message TTL of 1 ms
    [dead] = drain(transport, [f"{queue}.dlq"], 1)
    [death] = dead.envelope.headers["x-death"]
    assert body_n(dead) == 2 and death["reason"] == "expired" and death["queue"] == queue


def test_priorities_order_a_backlog(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str]
) -> None:
    transport, queue = make(), queue_name()
    priorities = [n % 10 for n in range(40)]
    transport.publish_many((queue, envelope(n, priority=p)) for n, p in enumerate(priorities))
    got = drain(transport, [queue], 40)
    assert [d.envelope.priority for d in got] == sorted(priorities, reverse=True)
    for priority in range(10):  # FIFO within a priority
        ns = [body_n(d) for d in got if d.envelope.priority == priority]
        assert ns == sorted(ns)


def test_a_queue_declared_with_other_arguments_is_used_as_it_is(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
    admin: amqp.Channel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = queue_name()
    admin.queue_declare(queue, durable=True, auto_delete=False)  # as Celery declares it
    transport = make()
    with caplog.at_level(logging.WARNING, logger="kq.amqp"):
        transport.publish(queue, envelope(1, priority=1))
        transport.publish(queue, envelope(2, priority=9))
    assert "inequivalent arg" in caplog.text and queue in caplog.text
    got = drain(transport, [queue], 2, ack=False)
    assert [body_n(d) for d in got] == [1, 2]  # no priorities on this queue
    # No dead-letter route on this queue, but kq's dead letters do not need one.
    transport.reject(got[0], requeue=False, reason="test")
    transport.ack(got[1:])
    assert transport.depth(queue) == 0
    [dead] = drain(transport, [f"{queue}.dlq"], 1)
    assert body_n(dead) == 1 and dead.envelope.headers[REJECT_REASON_HEADER] == "test"


def test_without_priority_and_dead_letter_queues_are_declared_like_celerys(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
    admin: amqp.Channel,
) -> None:
    queue = queue_name()
    make(max_priority=None, dead_letter=False).publish(queue, envelope(1))
    ok = admin.queue_declare(queue, durable=True, auto_delete=False)  # no 406
    assert ok.message_count == 1


def test_quorum_queues_give_back_and_dead_letter_too(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str]
) -> None:
    first, queue = make(queue_type="quorum"), queue_name()
    first.publish_many((queue, envelope(n)) for n in range(2))
    assert len(drain(first, [queue], 2, ack=False)) == 2
    first.close()  # unacked: back in the queue
    second = make(queue_type="quorum")
    got = drain(second, [queue], 2, ack=False)
    assert sorted(body_n(d) for d in got) == [0, 1] and all(d.redelivered for d in got)
    second.ack(got[:1])
    second.reject(got[1], requeue=False, reason="test")
    assert [body_n(d) for d in drain(second, [f"{queue}.dlq"], 1)] == [body_n(got[1])]


@pytest.mark.parametrize(
    "options, name",
    [
        ({"queue_type": "stream"}, "queue_type"),
        ({"queue_type": "quorum", "max_priority": 10}, "max_priority"),
        ({"max_priority": 0}, "max_priority"),
        ({"max_priority": True}, "max_priority"),
        ({"dead_letter": "yes"}, "dead_letter"),
        ({"heartbeat": -1}, "heartbeat"),
        ({"heartbeat": "30"}, "heartbeat"),
    ],
)
def test_invalid_options_name_the_option(amqp_url: str, options: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"broker_transport_options\\['{name}'\\]"):
        AMQPTransport(amqp_url, options)


# -- heartbeats -----------------------------------------------------------------------------


def test_consuming_connections_have_heartbeats_and_publishing_ones_none(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str]
) -> None:
    """A publisher may idle for longer than two heartbeats with nothing to send them, so only
    a connection opened to consume offers them (the silent-loss test is in tests/chaos)."""
    queue = queue_name()
    publisher, consumer, off = make(), make(heartbeat=5), make(heartbeat=0)
    publisher.publish(queue, envelope(1))
    assert consumer.fetch([queue], 1, 5) and off.fetch([queue], 1, 0.2) == []
    assert publisher._connection.connection.heartbeat == 0
    assert consumer._connection.connection.heartbeat == 5
    assert off._connection.connection.heartbeat == 0
    consumer.keep_alive()  # nothing missed: no error


# -- delay queues ---------------------------------------------------------------------------


def test_delay_bucket_rounds_up_by_less_than_a_128th() -> None:
    assert [delay_bucket(ms) for ms in (1, 255, 256, 257, 1500)] == [1, 255, 256, 258, 1504]
    for ms in (300, 1_000, 60_000, 3_600_000, 86_400_000, 2**31 - 1):
        bucket = delay_bucket(ms)
        assert ms <= bucket < ms + ms / 2 ** (DELAY_PRECISION_BITS - 1)
        assert (
            bucket >> max(bucket.bit_length() - DELAY_PRECISION_BITS, 0)
        ).bit_length() <= DELAY_PRECISION_BITS


def test_delayed_message_waits_in_the_broker_until_due(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str]
) -> None:
    publisher, consumer, queue = make(), make(), queue_name()
    due = utcnow() + timedelta(seconds=1.5)
    publisher.publish(queue, envelope(1, priority=5), eta=due)
    publisher.publish(queue, envelope(2), eta=utcnow() - timedelta(seconds=5))  # overdue: now
    assert [body_n(d) for d in drain(consumer, [queue], 1)] == [2]
    assert publisher.depth(queue) == 0  # the early one is not in the queue, nor in a consumer
    [got] = drain(consumer, [queue], 1, timeout=30)
    assert utcnow() >= due
    assert body_n(got) == 1 and got.envelope.priority == 5
    [death] = got.envelope.headers["x-death"]
    assert death["reason"] == "expired" and death["queue"].startswith(f"{queue}.delay.")


def test_delays_of_one_bucket_share_a_queue(
    make: Callable[..., AMQPTransport], queue_name: Callable[[], str]
) -> None:
    transport, queue = make(), queue_name()
    eta = utcnow() + timedelta(seconds=60)
    for n in range(3):
        transport.publish(queue, envelope(n), eta=eta)
    delay_queues = [q for q in transport._delay_declared if q.startswith(f"{queue}.delay.")]
    assert len(delay_queues) <= 2  # the three delays differ by milliseconds
    assert sum(transport.depth(q) for q in delay_queues) == 3
    for name in delay_queues:
        transport.purge(name)


# -- acks -----------------------------------------------------------------------------------


def test_a_run_of_the_oldest_deliveries_is_acked_with_one_multiple_ack(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
) -> None:
    transport, queue = make(), queue_name()
    transport.publish_many((queue, envelope(n)) for n in range(6))
    got = drain(transport, [queue], 6, ack=False)
    acks: list[tuple[int, bool]] = []
    channel = transport._channel
    real_ack = channel.basic_ack

    def spy(delivery_tag: int, multiple: bool = False) -> None:
        acks.append((delivery_tag, multiple))
        real_ack(delivery_tag, multiple=multiple)

    channel.basic_ack = spy
    tags = [d.tag.delivery_tag for d in got]
    transport.ack(got[:3])  # tags 1-3: nothing older is unsettled
    transport.ack([got[4], got[5]])  # 4 is still unsettled: one by one
    transport.ack(got[3:])  # 4, and 5-6 again (harmless)
    assert acks == [(tags[2], True), (tags[4], False), (tags[5], False), (tags[3], False)]
    transport.close()
    assert make().fetch([queue], 10, 0.5) == []  # all really acked


# -- connection loss ------------------------------------------------------------------------


def test_every_operation_raises_broker_unavailable_with_the_password_masked() -> None:
    transport = AMQPTransport("amqp://guest:s3cret@127.0.0.1:1//")  # nothing listens on port 1
    calls: list[Callable[[], Any]] = [
        lambda: transport.publish("q", envelope()),
        lambda: transport.publish("q", envelope(), eta=utcnow() + timedelta(seconds=5)),
        lambda: transport.fetch(["q"], 1, 0.1),
        lambda: transport.purge("q"),
        lambda: transport.depth("q"),
        lambda: transport.broadcast("c", envelope()),
        lambda: transport.subscribe("c"),
    ]
    for call in calls:
        with pytest.raises(BrokerUnavailable, match=r"amqp://guest:\*\*@127\.0\.0\.1:1//") as info:
            call()
        assert "s3cret" not in str(info.value)


def test_a_connection_the_broker_closes_raises_broker_unavailable_and_old_acks_are_skipped(
    make: Callable[..., AMQPTransport],
    queue_name: Callable[[], str],
    close_from_server: Callable[[Any], None],
) -> None:
    transport, queue = make(), queue_name()
    transport.publish_many((queue, envelope(n)) for n in range(3))
    got = drain(transport, [queue], 3, ack=False)
    close_from_server(transport._connection)
    with pytest.raises(BrokerUnavailable, match="CONNECTION_FORCED"):
        transport.fetch([queue], 10, 5)
    transport.close()  # what the worker does; it must not raise
    fresh = make()
    fresh.ack(got)  # fetched on the dead channel: skipped, not an error, not a reconnect loop
    again = drain(fresh, [queue], 3)
    assert sorted(body_n(d) for d in again) == [0, 1, 2]
    assert all(d.redelivered for d in again)


def test_subscription_queues_go_away_with_the_connection(
    make: Callable[..., AMQPTransport], admin: amqp.Channel
) -> None:
    subscriber = make()
    queue = subscriber.subscribe("kq-amqp-test-bcast")
    with pytest.raises(amqp.exceptions.ResourceLocked):  # exists, and only for its connection
        admin.queue_declare(queue, passive=True)
    subscriber.close()
    with pytest.raises(amqp.exceptions.NotFound):
        admin.queue_declare(queue, passive=True)
    admin.exchange_delete("kq-amqp-test-bcast")  # py-amqp reopened the channel after the 404


def test_loading_the_plugin_leaves_kombu_for_the_first_broker_or_backend() -> None:
    assert imported_on_load("kq_amqp", "kq_amqp.transport", "kq_amqp.backend", "kq_amqp.confirms") == [
        "kq_amqp"
    ]
