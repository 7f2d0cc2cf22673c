"""What is special to kq-sqs, against moto's SQS: fetch timeouts with long polling, kombu/Celery
wire compatibility, FIFO deduplication and groups, delays past SQS's 15 minutes, errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import kombu
import pytest

from kq.exceptions import BrokerUnavailable, ConfigurationError
from kq.plugins import get_plugins
from kq.protocol import utcnow
from kq.testing.aws import REGION
from kq.testing.contracts.transport import body_n, drain, envelope
from kq.testing.imports import imported_on_load
from kq.testing.servers import free_port
from kq.transport import Envelope, Transport


@pytest.fixture
def make(sqs_options: dict[str, Any]) -> Iterator[Callable[..., Transport]]:
    made: list[Transport] = []

    def make(url: str = "sqs://", **options: Any) -> Transport:
        made.append(get_plugins().transport_for(url).factory(url, {**sqs_options, **options}))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def queue() -> str:
    return f"kq-sqs-test-{uuid.uuid4().hex[:10]}"


def attribute(sqs: Any, name: str, attribute: str) -> int:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"][attribute])


def test_a_fetch_returns_on_time_whatever_the_long_poll(make: Callable[..., Transport], queue: str) -> None:
    transport = make(wait_time_seconds=20)
    transport.fetch([queue], 10, 0.05)  # creates the queue
    for timeout, most in ((0.0, 0.9), (1.5, 3.5)):
        start = time.monotonic()
        assert transport.fetch([queue], 10, timeout) == []
        assert timeout <= time.monotonic() - start < most


def test_options_are_checked() -> None:
    factory = get_plugins().transport_for("sqs://").factory
    with pytest.raises(ConfigurationError, match="fifo_group_by"):
        factory("sqs://", {"fifo_group_by": "message"})
    with pytest.raises(ConfigurationError, match="wait_time_seconds"):
        factory("sqs://", {"wait_time_seconds": 30})


def test_looking_at_a_missing_queue_does_not_create_it(
    make: Callable[..., Transport], queue: str, sqs: Any
) -> None:
    transport = make()
    assert transport.depth(queue) == 0 and transport.purge(queue) == 0
    assert not sqs.list_queues(QueueNamePrefix=queue).get("QueueUrls")


def test_queue_names_get_the_prefix_and_sqs_spelling(make: Callable[..., Transport], sqs: Any) -> None:
    prefix = f"kq{uuid.uuid4().hex[:6]}-"
    transport = make(queue_name_prefix=prefix)
    transport.publish("tasks.high", envelope(1))
    assert [url.rsplit("/", 1)[1] for url in sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"]] == [
        f"{prefix}tasks-high"
    ]
    assert [body_n(d) for d in drain(transport, ["tasks.high"], 1)] == [1]


def test_a_delay_past_15_minutes_is_held_for_15_by_sqs(
    make: Callable[..., Transport], queue: str, sqs: Any
) -> None:
    transport = make()
    transport.publish(queue, envelope(1), eta=utcnow() + timedelta(hours=2))
    assert transport.fetch([queue], 10, 0.3) == []
    assert attribute(sqs, queue, "ApproximateNumberOfMessagesDelayed") == 1
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    sqs.purge_queue(QueueUrl=url)


def test_fifo_queues_take_no_delay_so_the_message_comes_at_once(
    make: Callable[..., Transport], queue: str
) -> None:
    transport = make()
    fifo = queue + ".fifo"
    transport.publish(fifo, envelope(1), eta=utcnow() + timedelta(minutes=5))
    [got] = drain(transport, [fifo], 1)
    assert body_n(got) == 1  # the worker holds it until its eta (it is in the headers)


def test_fifo_deduplicates_by_task_id_and_retry(make: Callable[..., Transport], queue: str) -> None:
    transport = make()
    fifo = queue + ".fifo"
    first = {"id": "task-1", "retries": 0, "n": 1, "task": "t"}
    transport.publish(fifo, Envelope(b"1", "application/json", headers=first))
    transport.publish(fifo, Envelope(b"1", "application/json", headers=first))  # a repeated publish
    transport.publish_many(
        [(fifo, Envelope(b"2", "application/json", headers={**first, "retries": 1, "n": 2}))]
    )
    got = drain(transport, [fifo], 3, timeout=3)
    assert [body_n(d) for d in got] == [1, 2]


def test_fifo_one_group_per_queue_hands_out_one_batch_at_a_time(
    make: Callable[..., Transport], queue: str
) -> None:
    fifo = queue + ".fifo"
    first, second = make(fifo_group_by="queue"), make(fifo_group_by="queue")
    first.publish_many((fifo, envelope(n)) for n in range(3))
    held = drain(first, [fifo], 3, ack=False)
    assert [body_n(d) for d in held] == [0, 1, 2]
    second.publish(fifo, envelope(3))
    assert second.fetch([fifo], 10, 0.5) == []  # the group is in flight with the first consumer
    first.ack(held)
    assert [body_n(d) for d in drain(second, [fifo], 1)] == [3]


def _kombu_connection(endpoint: str) -> kombu.Connection:
    """A plain kombu SQS connection, as Celery opens one (endpoint in the URL's host)."""
    host = urlsplit(endpoint).netloc
    return kombu.Connection(
        f"sqs://testing:testing@{host}",
        transport_options={"region": REGION, "is_secure": False, "wait_time_seconds": 1},
    )


def test_kombu_reads_what_kq_sends_and_kq_what_kombu_sends(
    make: Callable[..., Transport], queue: str, aws_endpoint: str
) -> None:
    transport = make()
    transport.publish(
        queue, Envelope(b'{"from": "kq"}', "application/json", headers={"task": "proj.add", "id": "abc"})
    )
    with _kombu_connection(aws_endpoint) as connection:
        simple = connection.SimpleQueue(queue)
        message = simple.get(block=True, timeout=10)
        assert message.payload == {"from": "kq"}
        assert message.headers == {"task": "proj.add", "id": "abc"}
        message.ack()
        connection.Producer().publish(
            {"from": "kombu"}, routing_key=queue, serializer="json", headers={"task": "proj.mul", "id": "def"}
        )
        simple.close()
    [got] = drain(transport, [queue], 1)
    assert got.envelope.body == b'{"from": "kombu"}'
    assert got.envelope.content_type == "application/json"
    assert dict(got.envelope.headers) == {"task": "proj.mul", "id": "def"}


def test_an_unreachable_endpoint_is_broker_unavailable() -> None:
    transport = (
        get_plugins()
        .transport_for("sqs://")
        .factory(
            "sqs://",
            {
                "endpoint_url": f"http://127.0.0.1:{free_port()}",
                "region": REGION,
                "client-config": {"connect_timeout": 1, "retries": {"total_max_attempts": 1}},
            },
        )
    )
    try:
        with pytest.raises(BrokerUnavailable, match="127.0.0.1"):
            transport.publish("anything", envelope(1))
    finally:
        transport.close()


def test_loading_the_plugin_does_not_import_the_transport() -> None:
    assert imported_on_load("kq_sqs.transport", "kombu.transport.SQS", "boto3") == []
