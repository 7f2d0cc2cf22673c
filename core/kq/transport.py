"""The transport interface: what the kernel needs from a broker, and nothing more.

A transport moves :class:`Envelope` objects between named queues. The kernel never talks to a
broker any other way, so a plugin that implements this class (natively, or through
:mod:`kq.kombu_transport` for any kombu transport) is a complete broker for kq.

Contract (checked by :class:`kq.testing.contracts.TransportContract`):

* Delivery is at least once. A fetched message stays owned by its consumer until :meth:`ack`
  or :meth:`reject`; if the consumer dies first, the message comes back (on connection loss, or
  after the visibility timeout for brokers without connection-bound ownership).
* One instance is used from one thread at a time. The kernel opens one per consumer and guards
  the publisher's with a lock.
* ``eta`` is honoured only when ``capabilities.native_delay`` is true; otherwise the kernel never
  passes it and the worker holds early messages itself.
* When the broker cannot be reached or the connection breaks, any method raises
  :class:`~kq.exceptions.BrokerUnavailable` (translate the client library's errors). The kernel
  then closes the instance and opens a new one with backoff. Deliveries fetched on the broken
  connection are acked later through the new instance only if ``capabilities.visibility_timeout``
  (their ownership is not tied to a connection); otherwise the kernel forgets them and the
  broker redelivers them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

import attrs

from .exceptions import PluginError


@attrs.frozen
class Envelope:
    """A message as the broker sees it: opaque body bytes plus the routing-free metadata."""

    body: bytes
    content_type: str
    content_encoding: str = "utf-8"
    headers: Mapping[str, Any] = attrs.field(factory=dict)
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None


@attrs.frozen
class Delivery:
    """A fetched message, owned by the consumer that fetched it until acked or rejected."""

    envelope: Envelope
    queue: str
    #: Whatever the transport needs to ack or reject this message; opaque to the kernel.
    tag: Any = attrs.field(eq=False)
    redelivered: bool = False


@attrs.frozen
class TransportCapabilities:
    """What a transport can do natively; the kernel picks its code path from these flags."""

    #: Messages with a higher ``Envelope.priority`` (0-9, 9 highest) are fetched first.
    priorities: bool = False
    #: ``publish(..., eta=...)`` keeps the message in the broker until it is due.
    native_delay: bool = False
    #: A fetched, unacked message returns to its queue after a timeout even if the connection
    #: that fetched it stays open (SQLite, Redis), rather than only when the connection drops.
    visibility_timeout: bool = False
    #: :meth:`Transport.broadcast` and :meth:`Transport.subscribe` work.
    fanout: bool = False
    #: ``reject(requeue=False)`` moves the message, body and headers intact, to its queue's
    #: :func:`dead_letter_queue` instead of dropping it, adding :func:`dead_letter_headers`.
    dead_letter: bool = False
    #: :meth:`Transport.depth` is the exact number of ready messages. A broker that has no way to
    #: count them (Google Pub/Sub) declares False; its ``depth`` returns an estimate, or ``-1`` when
    #: it has none, and ``kq queues`` and the probes show it as unknown.
    exact_depth: bool = True


#: A queue's dead-letter queue is named after it with this suffix: ``celery`` -> ``celery.dlq``.
DEAD_LETTER_SUFFIX = ".dlq"
#: Why a message was dead-lettered: the worker's ``reason: detail`` (``unknown-task: ...``).
REJECT_REASON_HEADER = "x-kq-reject-reason"
#: When it was dead-lettered, ISO 8601 in UTC.
REJECTED_AT_HEADER = "x-kq-rejected-at"
#: The queue that refused it, where ``kq dlq replay`` puts it back.
ORIGINAL_QUEUE_HEADER = "x-kq-original-queue"
#: The headers :func:`dead_letter_headers` adds, which a replay removes again.
DEAD_LETTER_HEADERS = (REJECT_REASON_HEADER, REJECTED_AT_HEADER, ORIGINAL_QUEUE_HEADER)


def dead_letter_queue(queue: str) -> str:
    """The dead-letter queue of ``queue``."""
    return queue + DEAD_LETTER_SUFFIX


def dead_letter_headers(headers: Mapping[str, Any], queue: str, reason: str) -> dict[str, Any]:
    """``headers`` of a message refused by ``queue``, plus why, when and where from.

    Every transport that dead-letters (``capabilities.dead_letter``) records these three, so
    that ``kq dlq`` reads the dead letters of any broker the same way. Headers that are not a
    mapping (a hostile message's) are dropped: the reason and the body are what matter then.
    """
    return {
        **(headers if isinstance(headers, Mapping) else {}),
        REJECT_REASON_HEADER: reason,
        REJECTED_AT_HEADER: datetime.now(timezone.utc).isoformat(),
        ORIGINAL_QUEUE_HEADER: queue,
    }


class Transport(abc.ABC):
    """Base class of every transport. Subclasses set :attr:`capabilities`."""

    capabilities: ClassVar[TransportCapabilities] = TransportCapabilities()

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})

    @abc.abstractmethod
    def publish(self, queue: str, envelope: Envelope, *, eta: datetime | None = None) -> None:
        """Put one message on ``queue``, creating the queue if needed; durable once it returns."""

    def publish_many(self, items: Iterable[tuple[str, Envelope]]) -> None:
        """Put many messages at once. Override to use one round trip; order within a queue is kept."""
        for queue, envelope in items:
            self.publish(queue, envelope)

    @abc.abstractmethod
    def fetch(self, queues: Sequence[str], limit: int, timeout: float) -> list[Delivery]:
        """Return up to ``limit`` messages from ``queues``, waiting up to ``timeout`` s for the first.

        Return an empty list on timeout. Earlier queues in ``queues`` may be preferred but none
        may be starved forever.
        """

    @abc.abstractmethod
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove these messages for good. Acking a message twice is harmless."""

    def ack_and_fetch(
        self, acks: Sequence[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        """:meth:`ack` ``acks``, then :meth:`fetch`: the worker's every step is this pair (the
        tasks it just started or finished, and the top-up of its prefetch window), so a
        transport that can send both in one round trip should override this. The acks must
        hold even when the fetch then times out; if this raises, the worker acks them again
        (acking twice is harmless)."""
        self.ack(acks)
        return self.fetch(queues, limit, timeout)

    @abc.abstractmethod
    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        """Give a message back (``requeue=True``) or refuse it for good.

        A refused message is dead-lettered with ``reason`` when ``capabilities.dead_letter``
        (to :func:`dead_letter_queue`, with :func:`dead_letter_headers`), else dropped.
        """

    @abc.abstractmethod
    def purge(self, queue: str) -> int:
        """Delete every ready message in ``queue``; return how many were deleted."""

    @abc.abstractmethod
    def depth(self, queue: str) -> int:
        """Return how many ready messages ``queue`` holds (not counting fetched, unacked ones)."""

    def broadcast(self, channel: str, envelope: Envelope) -> None:
        """Deliver a copy of ``envelope`` to every current subscriber of ``channel``."""
        raise PluginError(f"{type(self).__name__} does not support broadcast (fanout)")

    def subscribe(self, channel: str) -> str:
        """Start receiving broadcasts on ``channel``; return a private queue name to fetch from.

        The private queue goes away with :meth:`unsubscribe` or when the transport closes.
        """
        raise PluginError(f"{type(self).__name__} does not support broadcast (fanout)")

    def unsubscribe(self, queue: str) -> None:
        """Stop a subscription made by :meth:`subscribe`."""
        raise PluginError(f"{type(self).__name__} does not support broadcast (fanout)")

    def keep_alive(self) -> None:  # noqa: B027 - optional hook, for connections with heartbeats
        """Keep a consuming connection's heartbeats going while it does not fetch.

        The worker calls this about once a second while its prefetch window is full. A
        transport whose connection exchanges heartbeats sends one when due here and raises
        :class:`BrokerUnavailable` when the broker has gone silent; others need nothing.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most transports need it
        """Release connections. Messages fetched and not yet acked go back to their queues."""

    def disconnect(self) -> None:
        """Drop the connection after it failed, without giving anything back.

        The worker calls this, not :meth:`close`, after :class:`BrokerUnavailable`: with
        ``capabilities.visibility_timeout`` it keeps the deliveries it fetched and acks them
        through a new instance, so they must stay leased. Others keep the default (``close``):
        their deliveries die with the connection anyway.
        """
        self.close()


@attrs.frozen
class TransportSpec:
    """A broker, as a plugin declares it in ``kq_transports``."""

    #: URL schemes this transport serves (``("redis", "rediss")``); each may be claimed once.
    schemes: tuple[str, ...] = attrs.field(converter=tuple[str, ...])
    #: Called as ``factory(url, options)`` with the broker URL and ``broker_transport_options``.
    factory: Callable[[str, Mapping[str, Any]], Transport]
    #: Defaults to the factory's own ``capabilities`` attribute (the interface class declares
    #: them once); a factory that is a plain function must pass them here.
    capabilities: TransportCapabilities = attrs.field(
        default=attrs.Factory(
            lambda spec: getattr(spec.factory, "capabilities", None) or TransportCapabilities(),
            takes_self=True,
        )
    )
    description: str = ""
