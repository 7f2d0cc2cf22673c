"""kq's transport interface over any kombu transport: AMQP (py-amqp), SQS, kombu's memory, ...

A plugin for a broker that kombu already speaks returns :class:`KombuTransport` (or a subclass
that sets :attr:`~kq.transport.Transport.capabilities` and :attr:`KombuTransport.transport_defaults`
and, where the broker offers more, overrides the ``_declare_task_queue``, ``_route`` or
``_send_acks`` hooks, or ``publish_many``) as its ``TransportSpec.factory``.

Messages keep kombu's envelope unchanged: the body bytes go out with their content type and
encoding, headers and properties exactly where a Celery worker looks for them, and nothing is
serialized a second time. Queues are durable and fed through the default exchange ``""`` with
the queue name as routing key, so they need no bindings. ``publish_many`` is the base class's
loop of ``publish``: kombu 5.7's ``Producer.batch`` batches only on Redis, which kq-redis speaks
natively anyway, and what else makes a batch faster is the broker's (kq-amqp pipelines
RabbitMQ's publisher confirms, building messages with :meth:`KombuTransport._message`).

Prefetch: consuming starts with ``basic_qos(prefetch_count=N)``, N being the ``prefetch_count``
option (``0`` means unlimited) or else :data:`PREFETCH_MULTIPLIER` times the ``limit`` of the
fetch that started consuming, like Celery's default ``worker_prefetch_multiplier``. Fetched but
unacked messages count towards N, so a consumer holding N messages gets no more until it acks:
that is the back-pressure which keeps one worker from hoarding a queue. There is one kombu
consumer per queue (that is how a delivery knows its queue), and AMQP applies N per consumer,
so a worker on several queues may hold up to N per queue. N is fixed when consuming starts; a
different queue set starts over.

Errors: every public method raises :class:`~kq.exceptions.BrokerUnavailable` for kombu's
connection errors and for channel errors, because a channel error leaves the instance without
a usable channel (py-amqp reopens it, but without its consumers) and the only cure is the one
the kernel applies to a broken connection: close the instance and open a new one.

Heartbeats: a connection that dies without a reset (a NAT entry or firewall that drops it, a
machine that vanishes) looks idle, not broken: reads just time out. A connection opened to
consume therefore offers the broker a heartbeat of ``heartbeat`` seconds (the option, else
:attr:`KombuTransport.default_heartbeat`; 0 for none), where the transport supports them
(py-amqp does). Every fetch, and :meth:`KombuTransport.keep_alive` which the worker calls when
it does not fetch, sends one when due and raises ``BrokerUnavailable`` once nothing has arrived
for two intervals. Connections opened to publish offer none: a publisher may sit idle for
longer than that, and nothing would tick its heartbeats meanwhile.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

import attrs
import kombu
from kombu.exceptions import ChannelError

from .config import safe_url
from .events import CHANNEL as EVENTS_CHANNEL
from .exceptions import BrokerUnavailable, ConfigurationError, KQError, PluginError
from .redact import scrub
from .transport import Delivery, Envelope, Transport, dead_letter_headers, dead_letter_queue

log = logging.getLogger("kq.kombu")

#: Default prefetch count per fetch ``limit``; see the module docstring.
PREFETCH_MULTIPLIER = 4

_PERSISTENT, _TRANSIENT = 2, 1
#: A subscriber's binding key: every message of a topic exchange (a fanout one ignores it).
_ALL = "#"
R = TypeVar("R")
P = ParamSpec("P")
K = TypeVar("K", bound="KombuTransport")


def unavailable_error(
    exc: BaseException,
    connection: kombu.Connection | None,
    url: str,
    unavailable: type[KQError] = BrokerUnavailable,
) -> KQError | None:
    """``unavailable`` (naming the URL with its password masked) if ``exc`` is one of
    ``connection``'s connection or channel errors (see the module docstring for why channel
    errors count), else ``None``."""
    if connection is None or isinstance(exc, KQError):
        return None
    errors = (
        *connection.connection_errors,
        *connection.recoverable_connection_errors,
        *connection.channel_errors,
        OSError,
    )
    if not isinstance(exc, errors):
        return None
    return unavailable(f"connection to {safe_url(url)} failed: {scrub(repr(exc), url)}")


@contextmanager
def kombu_errors(
    connection: kombu.Connection | None, url: str, unavailable: type[KQError] = BrokerUnavailable
) -> Iterator[None]:
    """Re-raise what :func:`unavailable_error` translates."""
    try:
        yield
    except Exception as exc:
        error = unavailable_error(exc, connection, url, unavailable)
        if error is None:
            raise
        raise error from exc


def connect(
    url: str,
    transport_options: Mapping[str, Any],
    unavailable: type[KQError] = BrokerUnavailable,
    heartbeat: float = 0.0,
    transport: type | None = None,
) -> tuple[kombu.Connection, Any]:
    """A new kombu connection and a channel on it, after one attempt: retrying and backing off
    is the caller's policy, not kombu's. A failure raises ``unavailable`` naming the URL, never
    the password. ``heartbeat`` (seconds, 0 for none) is offered to the broker; whoever asks
    for it must then call ``heartbeat_check`` about once a second. ``transport``: a kombu
    transport class to use instead of the one the URL's scheme names (a plugin's subclass)."""
    connection = kombu.Connection(
        url, heartbeat=heartbeat, transport=transport, transport_options=dict(transport_options)
    )
    errors = (*connection.connection_errors, *connection.channel_errors, OSError)
    try:
        connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
        return connection, connection.channel()
    except BaseException as exc:
        connection.release()
        if isinstance(exc, errors):
            raise unavailable(f"cannot connect to {safe_url(url)}: {scrub(str(exc), url)}") from exc
        raise


def _keep_bodies_as_sent(channel: Any) -> None:
    """Make ``channel`` build received messages with the body as it was sent.

    kombu inflates a body whose ``compression`` header it knows while it builds the message:
    all of it, before kq sees it. A small message could then fill memory, a signature over the
    compressed bytes could not be checked, and kq would inflate the body a second time. kq
    inflates by itself (:mod:`kq.codec`: after checking the signature, stopping at
    ``message_max_size``), so the header is held back while kombu builds the message.
    """
    base = channel.Message

    class AsSent(base):  # type: ignore[misc, valid-type]  # kombu's class of this transport
        def __init__(self, raw: Any, *args: Any, **kwargs: Any) -> None:
            # py-amqp's raw message keeps headers in its properties, kombu's virtual ones in a dict
            headers: Any = (
                raw.get("headers")
                if isinstance(raw, dict)
                else getattr(raw, "properties", {}).get("application_headers")
            )
            held = headers.pop("compression", None) if isinstance(headers, dict) else None
            try:
                super().__init__(raw, *args, **kwargs)
            finally:
                if held is not None:
                    headers["compression"] = held
            if held is not None:
                self.headers: dict[str, Any] = {**self.headers, "compression": held}

    channel.Message = AsSent


def _translated(method: Callable[Concatenate[K, P], R]) -> Callable[Concatenate[K, P], R]:
    """Let a public method raise BrokerUnavailable for its instance's connection errors (looked
    up when it fails: the method may have opened the connection itself)."""

    @functools.wraps(method)
    def wrapper(self: K, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            error = unavailable_error(exc, self._connection, self.url)
            if error is None:
                raise
            raise error from exc

    return wrapper


class KombuTransport(Transport):
    """kq's transport on one kombu connection and one channel, opened on first use.

    An instance serves one thread at a time (the kernel gives each consumer its own), so it
    keeps its producer, consumers, declared queues and prefetched messages without locks.
    """

    #: kombu transport options this broker needs unless the user sets them otherwise.
    transport_defaults: ClassVar[Mapping[str, Any]] = {}
    #: Options the adapter (or a subclass) reads itself; every other option goes to kombu.
    adapter_options: ClassVar[frozenset[str]] = frozenset({"prefetch_count", "heartbeat"})
    #: Heartbeat (s) a consuming connection offers unless the ``heartbeat`` option says
    #: otherwise; 0 for none. See "Heartbeats" in the module docstring.
    default_heartbeat: ClassVar[float] = 0.0
    #: The kombu transport class to connect with, when a plugin subclasses kombu's own (kq-sqs);
    #: ``None`` takes the one kombu names by the URL's scheme.
    kombu_transport: ClassVar[type | None] = None

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        heartbeat = self.options.get("heartbeat", self.default_heartbeat)
        if (
            isinstance(heartbeat, bool)
            or not isinstance(heartbeat, (int, float))
            or not (0 <= heartbeat < math.inf)
        ):
            raise ConfigurationError(
                f"broker_transport_options['heartbeat'] must be a number of seconds >= 0 (0 turns "
                f"heartbeats off), got {heartbeat!r}"
            )
        self.heartbeat = float(heartbeat)
        self._reset()

    def _reset(self) -> None:
        self._connection: kombu.Connection | None = None
        self._channel: Any = None
        self._declared: set[str] = set()
        self._exchanges: set[str] = set()
        self._subscriptions: dict[str, kombu.Queue] = {}
        self._unsubscribed: set[str] = set()
        self._consuming: tuple[str, ...] = ()
        self._consumers: dict[str, kombu.Consumer] = {}
        self._buffer: deque[Delivery] = deque()
        #: delivery tag -> kombu message, for every message received on this channel and not
        #: yet acked or rejected. Insertion order is delivery order, so the first key is the
        #: oldest unsettled delivery tag.
        self._unsettled: dict[Any, Any] = {}

    # -- connection -----------------------------------------------------------------------

    def _open(self, consume: bool = False) -> Any:
        """The channel, connecting first if needed, with heartbeats if it is to ``consume``."""
        if self._channel is not None:
            return self._channel
        transport_options = dict(self.transport_defaults)
        transport_options.update((k, v) for k, v in self.options.items() if k not in self.adapter_options)
        connection, channel = connect(
            self.url,
            transport_options,
            heartbeat=self.heartbeat if consume else 0.0,
            transport=self.kombu_transport,
        )
        _keep_bodies_as_sent(channel)
        self._connection, self._channel = connection, channel
        return channel

    def _aside(self, action: Callable[[Any], R]) -> R:
        """``action(channel)`` on a short-lived channel of this connection.

        AMQP closes the channel on which a declare fails (404 for a passive declare of a missing
        queue, 406 for different arguments), which would take this instance's consumers and
        unacked messages along; a channel of its own keeps that failure harmless.
        """
        self._open()
        assert self._connection is not None
        channel = self._connection.channel()
        try:
            return action(channel)
        finally:
            channel.close()

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

    def disconnect(self) -> None:
        """Drop a failed connection without a word to the broker: a peer that went silent would
        never answer a cancel or a close. The broker requeues what the connection held when it
        notices it is gone (at once on a reset, after its heartbeat timeout on a silent path)."""
        connection = self._connection
        self._reset()
        if connection is not None:
            try:
                connection.collect()
            except Exception:  # it is broken already; forgetting it is all that is left
                log.debug("kq: could not drop a failed connection", exc_info=True)

    @_translated
    def keep_alive(self) -> None:
        """Read what the broker sent (its heartbeats among it), send a heartbeat when one is
        due, and raise :class:`~kq.exceptions.BrokerUnavailable` when the broker has been silent
        for two heartbeat intervals."""
        connection = self._connection
        if connection is None or not self.heartbeat:
            return
        try:
            connection.drain_events(timeout=0)
        except TimeoutError:
            pass
        connection.heartbeat_check()

    # -- publishing -----------------------------------------------------------------------

    @_translated
    def publish(self, queue: str, envelope: Envelope, *, eta: datetime | None = None) -> None:
        self._open()
        self._ensure_queue(queue)
        self._send(envelope, "", self._route(queue, eta), _PERSISTENT)

    def _route(self, queue: str, eta: datetime | None) -> str:
        """The queue a message for ``queue`` is published to now: ``queue`` itself. A subclass
        with native delay routes early messages to where they wait until ``eta``."""
        if eta is not None:
            raise PluginError(
                f"{type(self).__name__} has no native delay; the worker must hold early messages"
            )
        return queue

    def _send(self, envelope: Envelope, exchange: str, routing_key: str, mode: int) -> None:
        channel = self._channel
        channel.basic_publish(
            self._message(channel, envelope, mode), exchange=exchange, routing_key=routing_key
        )

    @staticmethod
    def _message(channel: Any, envelope: Envelope, mode: int = _PERSISTENT) -> Any:
        """``envelope`` as ``channel``'s own message type, built as kombu's ``Producer`` builds
        it, for ``channel.basic_publish``. Built here rather than by a ``Producer`` so that a
        subclass can publish it another way (kq-amqp pipelines confirms for batches). The body
        bytes go out as they are, never re-serialized."""
        properties: dict[str, Any] = {"delivery_mode": mode}
        if envelope.correlation_id is not None:
            properties["correlation_id"] = envelope.correlation_id
        if envelope.reply_to is not None:
            properties["reply_to"] = envelope.reply_to
        return channel.prepare_message(
            envelope.body,
            envelope.priority or 0,
            envelope.content_type,
            envelope.content_encoding,
            dict(envelope.headers),  # the transport may add to it; the envelope stays untouched
            properties,
        )

    def _ensure_queue(self, name: str) -> None:
        """Declare task queue ``name`` once per connection."""
        if name not in self._declared:
            self._declare_task_queue(name)
            self._declared.add(name)

    def _declare_task_queue(self, name: str) -> None:
        """Declare a task queue: durable, no arguments. Subclasses add their broker's features."""
        kombu.Queue(name, durable=True)(self._channel).declare()

    # -- consuming ------------------------------------------------------------------------

    @_translated
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
        drain: Callable[..., Any] = self._connection.drain_events
        buffer = self._buffer
        deadline = time.monotonic() + timeout
        # With heartbeats, waits are cut into slices so they are checked (and sent) in time,
        # each check after a read: what the broker sent meanwhile is its sign of life.
        beat_every = self.heartbeat / 4 if self.heartbeat else math.inf
        while not buffer:
            remaining = deadline - time.monotonic()
            try:
                drain(timeout=max(min(remaining, beat_every), 0))
                timed_out = False
            except TimeoutError:  # socket.timeout, as kombu raises it
                timed_out = True
            if self.heartbeat:
                self._connection.heartbeat_check()
            if timed_out and remaining <= beat_every:
                break
        while buffer and len(buffer) < limit:  # top up the batch with what is already here
            try:
                drain(timeout=0)
            except TimeoutError:
                break
        return [buffer.popleft() for _ in range(min(limit, len(buffer)))]

    def _consume(self, queues: tuple[str, ...], limit: int) -> None:
        self._stop_consuming()
        channel = self._open(consume=True)
        for name in queues:
            if name not in self._subscriptions:
                self._ensure_queue(name)
        prefetch = self.options.get("prefetch_count")
        if prefetch is None:
            prefetch = PREFETCH_MULTIPLIER * max(limit, 1)
        channel.basic_qos(0, int(prefetch), False)
        for name in queues:
            entity = self._subscriptions.get(name) or kombu.Queue(name, durable=True)
            consumer = kombu.Consumer(
                channel,
                [entity],
                no_ack=False,
                auto_declare=False,
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
        buffered = list(self._buffer)
        self._buffer.clear()
        for message in self._settle(buffered):
            message.reject(requeue=True)

    def _received(self, queue: str, message: Any) -> None:
        properties = message.properties
        encoding = message.content_encoding or "utf-8"
        body = message.body
        if isinstance(body, str):  # py-amqp decodes bodies that are valid in content_encoding
            body = body.encode(encoding)  # the same bytes again: signatures cover them
        envelope = Envelope(
            body=body,
            content_type=message.content_type or "",
            content_encoding=encoding,
            headers=message.headers,
            priority=properties.get("priority"),
            correlation_id=properties.get("correlation_id"),
            reply_to=properties.get("reply_to"),
        )
        redelivered = bool(message.delivery_info.get("redelivered", False))
        self._unsettled[message.delivery_tag] = message
        self._buffer.append(Delivery(envelope=envelope, queue=queue, tag=message, redelivered=redelivered))

    def _settle(self, deliveries: Sequence[Delivery]) -> list[Any]:
        """Take the messages of ``deliveries`` out of the unsettled set and return them.

        Deliveries already acked or rejected are skipped (acking twice is harmless), and so are
        those fetched on another channel: a closed channel's messages are back in their queues,
        and their delivery tags, reused by this channel, would name other messages.
        """
        settled = []
        for delivery in deliveries:
            message = delivery.tag
            tag = message.delivery_tag
            if self._unsettled.get(tag) is message:
                del self._unsettled[tag]
                settled.append(message)
        return settled

    @_translated
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        messages = self._settle(deliveries)
        if messages:
            self._send_acks(messages)

    def _send_acks(self, messages: list[Any]) -> None:
        """Ack these just-settled messages, one frame each. AMQP can do a run of them with one
        multiple-ack; kombu's virtual transports ignore ``multiple``, so that is kq-amqp's."""
        for message in messages:
            message.ack()

    @_translated
    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        """Give the message back, or refuse it: dead-lettered when :meth:`_dead_letters`, else
        rejected without requeue (which a broker may dead-letter by itself, without a reason).

        A dead letter is a copy published to :func:`~kq.transport.dead_letter_queue` with the
        kernel's :func:`~kq.transport.dead_letter_headers`, then the original is acked: a
        broker's native dead-lettering (AMQP's ``x-dead-letter-exchange``) cannot carry
        ``reason``. Publish-then-ack: a crash in between leaves the message in both queues,
        never in neither.
        """
        message = delivery.tag
        if self._unsettled.get(message.delivery_tag) is not message:
            return  # already settled, or fetched on a channel that is gone
        if not requeue and self._dead_letters():
            envelope = delivery.envelope
            headers = dead_letter_headers(envelope.headers, delivery.queue, reason)
            self.publish(dead_letter_queue(delivery.queue), attrs.evolve(envelope, headers=headers))
            self.ack([delivery])
            return
        for message in self._settle([delivery]):
            message.reject(requeue=requeue)

    def _dead_letters(self) -> bool:
        """Whether ``reject(requeue=False)`` dead-letters: the capability, unless a subclass
        lets an option turn it off."""
        return self.capabilities.dead_letter

    # -- queue inspection -----------------------------------------------------------------

    @_translated
    def purge(self, queue: str) -> int:
        return self._if_queue_exists(queue, lambda channel, ok: channel.queue_purge(queue) or 0)

    @_translated
    def depth(self, queue: str) -> int:
        return self._if_queue_exists(queue, lambda channel, ok: ok.message_count)

    def _if_queue_exists(self, queue: str, action: Callable[[Any, Any], R]) -> R | int:
        """``action(channel, declare_ok)`` if ``queue`` exists, else 0 (on a channel aside)."""

        def passive(channel: Any) -> R | int:
            try:
                ok = channel.queue_declare(queue=queue, passive=True)
            except ChannelError as exc:
                if str(exc.reply_code) == "404":
                    return 0
                raise
            return action(channel, ok)

        return self._aside(passive)

    # -- fan-out --------------------------------------------------------------------------

    @staticmethod
    def _fanout(channel: str) -> kombu.Exchange:
        # Not auto-delete: a publisher that declared it once must not find it gone when the
        # last subscriber leaves.
        if channel == EVENTS_CHANNEL:
            # Declared exactly as Celery declares its event exchange (a durable topic exchange),
            # so Celery's monitors and workers share a vhost with kq's: a broker refuses a second
            # declaration of a name with other arguments. Bound with "#", a topic exchange fans
            # out like a fanout one, both to kq's subscribers and to Celery's receivers.
            return kombu.Exchange(channel, type="topic", durable=True, auto_delete=False)
        return kombu.Exchange(channel, type="fanout", durable=False, auto_delete=False)

    @_translated
    def broadcast(self, channel: str, envelope: Envelope) -> None:
        self._open()
        if channel not in self._exchanges:
            self._fanout(channel)(self._channel).declare()
            self._exchanges.add(channel)
        self._send(envelope, channel, "", _TRANSIENT)

    @_translated
    def subscribe(self, channel: str) -> str:
        name = f"{channel}.{uuid.uuid4().hex}"
        queue = kombu.Queue(
            name,
            exchange=self._fanout(channel),
            routing_key=_ALL,
            durable=False,
            exclusive=True,
            auto_delete=True,
        )
        queue(self._open(consume=True)).declare()
        self._declared.add(name)
        self._exchanges.add(channel)
        self._subscriptions[name] = queue
        return name

    @_translated
    def unsubscribe(self, queue: str) -> None:
        entity = self._subscriptions.pop(queue, None)
        if entity is None:
            return
        consumer = self._consumers.pop(queue, None)
        if consumer is not None:
            consumer.cancel()
            self._consuming = tuple(q for q in self._consuming if q != queue)
        kept: deque[Delivery] = deque()
        dropped: list[Delivery] = []
        for delivery in self._buffer:  # prefetched copies die with their queue
            (dropped if delivery.queue == queue else kept).append(delivery)
        self._buffer = kept
        for message in self._settle(dropped):
            message.reject(requeue=False)
        bound = entity(self._channel)
        # Unbind first: virtual transports route fan-out by the exchange's binding table,
        # which deleting the queue leaves behind.
        bound.unbind_from(entity.exchange, routing_key=_ALL)
        bound.delete()
        self._declared.discard(queue)
        self._unsubscribed.add(queue)
