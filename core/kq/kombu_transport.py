"""kq's transport interface over any kombu transport: AMQP (py-amqp), SQS, kombu's memory, ...

A plugin for a broker that kombu already speaks returns :class:`KombuTransport` (or a subclass
that only sets :attr:`~kq.transport.Transport.capabilities` and
:attr:`KombuTransport.transport_defaults`) as its ``TransportSpec.factory``.

Messages keep kombu's envelope unchanged: the body bytes go out with their content type and
encoding, headers and properties exactly where a Celery worker looks for them, and nothing is
serialized a second time. Queues are durable and fed through the default exchange ``""`` with
the queue name as routing key, so they need no bindings. ``publish_many`` is the base class's
loop over the one cached producer: kombu 5.7's ``Producer.batch`` batches only on Redis, which
kq-redis speaks natively anyway.

Prefetch: consuming starts with ``basic_qos(prefetch_count=N)``, N being the ``prefetch_count``
option (``0`` means unlimited) or else :data:`PREFETCH_MULTIPLIER` times the ``limit`` of the
fetch that started consuming, like Celery's default ``worker_prefetch_multiplier``. Fetched but
unacked messages count towards N, so a consumer holding N messages gets no more until it acks:
that is the back-pressure which keeps one worker from hoarding a queue. There is one kombu
consumer per queue (that is how a delivery knows its queue), and AMQP applies N per consumer,
so a worker on several queues may hold up to N per queue. N is fixed when consuming starts; a
different queue set starts over.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, TypeVar

import kombu
from kombu.exceptions import ChannelError

from .config import safe_url
from .exceptions import BrokerUnavailable, PluginError
from .transport import Delivery, Envelope, Transport

log = logging.getLogger("kq.kombu")

#: Default prefetch count per fetch ``limit``; see the module docstring.
PREFETCH_MULTIPLIER = 4
#: Options the adapter reads itself; every other option goes to kombu as a transport option.
ADAPTER_OPTIONS = frozenset({"prefetch_count"})

_PERSISTENT, _TRANSIENT = 2, 1
R = TypeVar("R")


class KombuTransport(Transport):
    """kq's transport on one kombu connection and one channel, opened on first use.

    An instance serves one thread at a time (the kernel gives each consumer its own), so it
    keeps its producer, consumers, declared queues and prefetched messages without locks.
    """

    #: kombu transport options this broker needs unless the user sets them otherwise.
    transport_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self._reset()

    def _reset(self) -> None:
        self._connection: kombu.Connection | None = None
        self._channel: Any = None
        self._producer: kombu.Producer | None = None
        self._declared: set[str] = set()
        self._exchanges: set[str] = set()
        self._subscriptions: dict[str, kombu.Queue] = {}
        self._unsubscribed: set[str] = set()
        self._consuming: tuple[str, ...] = ()
        self._consumers: dict[str, kombu.Consumer] = {}
        self._buffer: deque[Delivery] = deque()

    # -- connection -----------------------------------------------------------------------

    def _open(self) -> Any:
        """The channel, connecting first if needed; a failure names the URL, never the password."""
        if self._channel is not None:
            return self._channel
        transport_options = dict(self.transport_defaults)
        transport_options.update(
            (k, v) for k, v in self.options.items() if k not in ADAPTER_OPTIONS
        )
        connection = kombu.Connection(self.url, transport_options=transport_options)
        try:
            # One attempt: retrying and backing off is the caller's policy, not the adapter's.
            connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            channel = connection.channel()
        except (*connection.connection_errors, OSError) as exc:
            connection.release()
            raise BrokerUnavailable(
                f"cannot connect to the broker at {safe_url(self.url)}: {exc}"
            ) from exc
        self._connection, self._channel = connection, channel
        self._producer = kombu.Producer(channel, auto_declare=False)
        return channel

    def close(self) -> None:
        """Close the connection after giving back every fetched, unacked message.

        Messages are returned explicitly (``basic_recover``) instead of trusting the channel
        close to do it: AMQP would, but kombu's memory transport drops them. Subscriptions are
        deleted explicitly for the same reason (virtual transports keep exclusive queues).
        """
        connection = self._connection
        if connection is None:
            return
        try:
            for name in list(self._subscriptions):
                self.unsubscribe(name)
            for consumer in self._consumers.values():
                consumer.cancel()
            self._channel.basic_recover(requeue=True)
        except Exception:  # a broken connection: the broker requeues by itself when it notices
            log.debug("kq: could not return unacked messages before closing", exc_info=True)
        finally:
            self._reset()
            connection.release()

    # -- publishing -----------------------------------------------------------------------

    def publish(self, queue: str, envelope: Envelope, *, eta: datetime | None = None) -> None:
        if eta is not None:
            raise PluginError(
                f"{type(self).__name__} has no native delay; the worker must hold early messages"
            )
        self._open()
        if queue not in self._declared:
            self._declare(kombu.Queue(queue, durable=True))
        self._send(envelope, "", queue, _PERSISTENT)

    def _send(self, envelope: Envelope, exchange: str, routing_key: str, mode: int) -> None:
        properties: dict[str, Any] = {}
        if envelope.priority is not None:
            properties["priority"] = envelope.priority
        if envelope.correlation_id is not None:
            properties["correlation_id"] = envelope.correlation_id
        if envelope.reply_to is not None:
            properties["reply_to"] = envelope.reply_to
        assert self._producer is not None
        # A bytes body with an explicit content type is sent as it is, never re-serialized.
        self._producer.publish(
            envelope.body,
            exchange=exchange,
            routing_key=routing_key,
            content_type=envelope.content_type,
            content_encoding=envelope.content_encoding,
            headers=dict(envelope.headers),  # kombu may add to it; the envelope stays untouched
            delivery_mode=mode,
            **properties,
        )

    def _declare(self, queue: kombu.Queue) -> None:
        queue(self._channel).declare()
        self._declared.add(queue.name)

    # -- consuming ------------------------------------------------------------------------

    def fetch(self, queues: Sequence[str], limit: int, timeout: float) -> list[Delivery]:
        # A queue this instance unsubscribed is gone; declaring it again would resurrect it as
        # a durable queue nobody reads.
        wanted = tuple(q for q in queues if q not in self._unsubscribed)
        if not wanted:
            time.sleep(timeout)
            return []
        if wanted != self._consuming:
            self._consume(wanted, limit)
        assert self._connection is not None
        drain, buffer = self._connection.drain_events, self._buffer
        deadline = time.monotonic() + timeout
        while not buffer:
            try:
                drain(timeout=max(deadline - time.monotonic(), 0))
            except TimeoutError:  # socket.timeout, as kombu raises it
                break
        while buffer and len(buffer) < limit:  # top up the batch with what is already here
            try:
                drain(timeout=0)
            except TimeoutError:
                break
        return [buffer.popleft() for _ in range(min(limit, len(buffer)))]

    def _consume(self, queues: tuple[str, ...], limit: int) -> None:
        self._stop_consuming()
        channel = self._open()
        for name in queues:
            if name not in self._declared:
                self._declare(kombu.Queue(name, durable=True))
        prefetch = self.options.get("prefetch_count")
        if prefetch is None:
            prefetch = PREFETCH_MULTIPLIER * max(limit, 1)
        channel.basic_qos(0, int(prefetch), False)
        for name in queues:
            entity = self._subscriptions.get(name) or kombu.Queue(name, durable=True)
            consumer = kombu.Consumer(
                channel, [entity], no_ack=False, auto_declare=False,
                on_message=partial(self._received, name),
            )
            consumer.consume()
            self._consumers[name] = consumer
        self._consuming = queues

    def _stop_consuming(self) -> None:
        """Cancel the consumers and give back what they prefetched, for a new queue set."""
        for consumer in self._consumers.values():
            consumer.cancel()
        self._consumers.clear()
        self._consuming = ()
        while self._buffer:
            message = self._buffer.popleft().tag
            if not message.acknowledged:
                message.reject(requeue=True)

    def _received(self, queue: str, message: Any) -> None:
        properties = message.properties
        envelope = Envelope(
            body=message.body,
            content_type=message.content_type or "",
            content_encoding=message.content_encoding or "utf-8",
            headers=message.headers,
            priority=properties.get("priority"),
            correlation_id=properties.get("correlation_id"),
            reply_to=properties.get("reply_to"),
        )
        redelivered = bool(message.delivery_info.get("redelivered", False))
        self._buffer.append(
            Delivery(envelope=envelope, queue=queue, tag=message, redelivered=redelivered)
        )

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Ack each message (one frame each; AMQP multiple-ack is left to kq-amqp, which can
        tell when every lower delivery tag on the channel is in the batch)."""
        for delivery in deliveries:
            if not delivery.tag.acknowledged:
                delivery.tag.ack()

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        """Reject the message; ``reason`` is unused because dead-lettering, where a plugin
        configures it, happens in the broker."""
        if not delivery.tag.acknowledged:
            delivery.tag.reject(requeue=requeue)

    # -- queue inspection -----------------------------------------------------------------

    def purge(self, queue: str) -> int:
        return self._if_queue_exists(queue, lambda channel, ok: channel.queue_purge(queue) or 0)

    def depth(self, queue: str) -> int:
        return self._if_queue_exists(queue, lambda channel, ok: ok.message_count)

    def _if_queue_exists(self, queue: str, action: Callable[[Any, Any], R]) -> R | int:
        """``action(channel, declare_ok)`` if ``queue`` exists, else 0.

        It runs on a channel of its own because AMQP closes the channel on which a passive
        declare fails, which would take this instance's consumers and unacked messages along.
        """
        self._open()
        assert self._connection is not None
        channel = self._connection.channel()
        try:
            try:
                ok = channel.queue_declare(queue=queue, passive=True)
            except ChannelError as exc:
                if str(exc.reply_code) == "404":
                    return 0
                raise
            return action(channel, ok)
        finally:
            channel.close()

    # -- fan-out --------------------------------------------------------------------------

    @staticmethod
    def _fanout(channel: str) -> kombu.Exchange:
        # Not auto-delete: a publisher that declared it once must not find it gone when the
        # last subscriber leaves.
        return kombu.Exchange(channel, type="fanout", durable=False, auto_delete=False)

    def broadcast(self, channel: str, envelope: Envelope) -> None:
        self._open()
        if channel not in self._exchanges:
            self._fanout(channel)(self._channel).declare()
            self._exchanges.add(channel)
        self._send(envelope, channel, "", _TRANSIENT)

    def subscribe(self, channel: str) -> str:
        name = f"{channel}.{uuid.uuid4().hex}"
        queue = kombu.Queue(
            name, exchange=self._fanout(channel), routing_key="",
            durable=False, exclusive=True, auto_delete=True,
        )
        self._open()
        self._declare(queue)
        self._exchanges.add(channel)
        self._subscriptions[name] = queue
        return name

    def unsubscribe(self, queue: str) -> None:
        entity = self._subscriptions.pop(queue, None)
        if entity is None:
            return
        consumer = self._consumers.pop(queue, None)
        if consumer is not None:
            consumer.cancel()
            self._consuming = tuple(q for q in self._consuming if q != queue)
        kept: deque[Delivery] = deque()
        for delivery in self._buffer:  # prefetched copies die with their queue
            if delivery.queue == queue:
                delivery.tag.reject(requeue=False)
            else:
                kept.append(delivery)
        self._buffer = kept
        bound = entity(self._channel)
        # Unbind first: virtual transports route fan-out by the exchange's binding table,
        # which deleting the queue leaves behind.
        bound.unbind_from(entity.exchange, routing_key="")
        bound.delete()
        self._declared.discard(queue)
        self._unsubscribed.add(queue)
