"""The ``gcpubsub://`` broker: the kernel's kombu adapter on kombu's Pub/Sub transport.

``gcpubsub://projects/<project>``. Each kq queue ``q`` is a Pub/Sub topic ``kombu-q`` (kombu's
``queue_name_prefix``, dots become dashes) with one subscription of the same name that every
consumer of ``q`` pulls from, so each message goes to one consumer. kombu extends the ack
deadline of every message a consumer holds, so a long task is not redelivered meanwhile.

Giving a message back (a reject with requeue, a consumer that closes or changes queues) is a
Pub/Sub *nack*: its ack deadline is set to 0 and Pub/Sub redelivers that very message at once.
kombu's own way, publishing a copy, would leave the original unacknowledged, to be delivered a
second time once its deadline ran out; a reject without requeue acknowledges the message, so
Pub/Sub drops it (its dead-letter topics are configured on the subscription, outside kq).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import kombu
from kombu.transport import gcpubsub

from kq.config import safe_url
from kq.exceptions import ConfigurationError
from kq.kombu_transport import KombuTransport
from kq.transport import TransportCapabilities

from . import TRANSPORT_CAPABILITIES


def project_of(url: str) -> str:
    """The Google Cloud project a ``gcpubsub://projects/<project>`` URL names."""
    parts = urlsplit(url)
    project = parts.path.strip("/")
    if parts.scheme != "gcpubsub" or parts.netloc != "projects" or not project or "/" in project:
        raise ConfigurationError(
            f"{safe_url(url)} is not a Pub/Sub broker URL; expected gcpubsub://projects/<project>"
        )
    return project


class NackingChannel(gcpubsub.Channel):
    """kombu's Pub/Sub channel, giving messages back as nacks (see the module docstring)."""

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if not requeue:
            self.basic_ack(delivery_tag)  # type: ignore[no-untyped-call, unused-ignore]  # Pub/Sub drops it
            return
        pubsub = self.qos.get(delivery_tag).delivery_info["gcpubsub_message"]
        self.subscriber.modify_ack_deadline(
            request={
                "subscription": pubsub["subscription_path"],
                "ack_ids": [pubsub["ack_id"]],
                "ack_deadline_seconds": 0,
            }
        )
        described = self._queue_cache.get(pubsub["queue"])
        if described is not None:  # else kombu would go on extending its deadline
            described.unacked_ids.remove(pubsub["ack_id"])
        self.qos.reject(delivery_tag, requeue=False)  # kombu forgets it, without a copy

    def basic_recover(self, requeue: bool = True) -> None:
        """Give back every message this channel holds, as nacks."""
        for delivery_tag in list(self.qos._delivered):
            self.basic_reject(delivery_tag, requeue=True)


class NackingTransport(gcpubsub.Transport):
    """kombu's Pub/Sub transport with :class:`NackingChannel`, and a ``drain_events`` that
    takes ``timeout=0`` as "only what is here already", as the adapter means it (kombu's takes
    it for "no timeout" and would wait for a message for ever)."""

    Channel = NackingChannel

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        timeout = 0.001 if timeout == 0 else timeout
        return super().drain_events(connection, timeout=timeout, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]


class PubSubTransport(KombuTransport):
    """Google Cloud Pub/Sub through kombu; see the module docstring. Options
    (``broker_transport_options``) are kombu's: ``queue_name_prefix``, ``ack_deadline_seconds``,
    ``expiration_seconds``, ``wait_time_seconds``, ``retry_timeout_seconds``,
    ``bulk_max_messages``, ``enable_exactly_once_delivery``."""

    capabilities: ClassVar[TransportCapabilities] = TRANSPORT_CAPABILITIES
    kombu_transport: ClassVar[type | None] = NackingTransport

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.project = project_of(url)

    def _declare_task_queue(self, name: str) -> None:
        # kombu's Pub/Sub channel makes the topic and the subscription when a queue is bound
        # to a named exchange; the default exchange "" has no topic. So each queue gets a
        # direct exchange (its topic) of its own name.
        exchange = kombu.Exchange(name, type="direct", durable=True)
        kombu.Queue(name, exchange=exchange, routing_key=name, durable=True)(self._channel).declare()

    def _send(self, envelope: Any, exchange: str, routing_key: str, mode: int) -> None:
        # Messages for a queue go to its topic (see _declare_task_queue).
        super()._send(envelope, exchange or routing_key, routing_key, mode)
