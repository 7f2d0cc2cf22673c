"""What is special to kq-gcpubsub: its URL, its spec, a message given back is the same message
(not a copy that leaves the original to come back later), and a light plugin module."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq.testing.contracts.transport import body_n, drain, envelope
from kq.testing.imports import imported_on_load
from kq.transport import TransportCapabilities
from kq_gcpubsub.transport import PubSubTransport, project_of


def test_the_url_names_the_project() -> None:
    assert project_of("gcpubsub://projects/my-project") == "my-project"
    assert project_of("gcpubsub://projects/my-project/") == "my-project"


@pytest.mark.parametrize(
    "url", ["gcpubsub://", "gcpubsub://my-project", "gcpubsub://projects/", "gcpubsub://projects/a/b"]
)
def test_a_malformed_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="gcpubsub://projects/<project>"):
        get_plugins().transport_for(url).factory(url, {})


def test_the_spec_declares_no_optional_capability_and_inexact_depth() -> None:
    spec = get_plugins().transport_for("gcpubsub://projects/p")
    assert spec.schemes == ("gcpubsub",)
    expected = TransportCapabilities(exact_depth=False)
    assert spec.capabilities == expected == PubSubTransport.capabilities


def test_loading_the_plugin_does_not_import_kombu_pubsub_or_grpc() -> None:
    heavy = ("kq_gcpubsub.transport", "kombu.transport.gcpubsub", "google.cloud.pubsub_v1", "grpc")
    assert imported_on_load("kq_gcpubsub", *heavy) == ["kq_gcpubsub"]


def test_a_message_given_back_is_delivered_once_more_not_twice(
    pubsub_url: str, pubsub_options: dict[str, Any]
) -> None:
    """A reject with requeue and a close each give the message back as a nack: after the ack
    deadline has long passed, nothing of it is left to come back a second time."""
    queue = f"kq-test-{uuid.uuid4().hex[:10]}"
    options = {**pubsub_options, "ack_deadline_seconds": 10}  # Pub/Sub's shortest
    first = get_plugins().transport_for(pubsub_url).factory(pubsub_url, options)
    try:
        first.publish_many((queue, envelope(n)) for n in range(2))
        held = drain(first, [queue], 2, ack=False)
        assert sorted(body_n(d) for d in held) == [0, 1]
        first.reject(held[0], requeue=True, reason="test")
        [again] = drain(first, [queue], 1, ack=False)
        assert body_n(again) == body_n(held[0])
        first.ack([again])
    finally:
        first.close()  # gives back held[1]
    second = get_plugins().transport_for(pubsub_url).factory(pubsub_url, options)
    try:
        assert [body_n(d) for d in drain(second, [queue], 1)] == [body_n(held[1])]
        time.sleep(11)  # past the deadline any forgotten original would have had
        assert second.fetch([queue], 10, 1.0) == []
    finally:
        second.close()


def test_purge_empties_the_queue(pubsub_url: str, pubsub_options: dict[str, Any]) -> None:
    """Its count is Pub/Sub's estimate (-1 on the emulator), but the messages are gone."""
    queue = f"kq-test-{uuid.uuid4().hex[:10]}"
    transport = get_plugins().transport_for(pubsub_url).factory(pubsub_url, pubsub_options)
    try:
        transport.publish_many((queue, envelope(n)) for n in range(3))
        time.sleep(0.1)  # the seek is to "now" by the emulator's clock, to the millisecond
        transport.purge(queue)
        assert transport.fetch([queue], 10, 1.0) == []
        transport.publish(queue, envelope(7))
        assert [body_n(d) for d in drain(transport, [queue], 1)] == [7]
    finally:
        transport.close()
