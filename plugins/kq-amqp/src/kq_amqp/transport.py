"""The ``amqp://`` broker: the kernel's kombu adapter on py-amqp, plus what RabbitMQ adds.

* Publisher confirms (kombu's ``confirm_publish``): ``publish`` returns once RabbitMQ has taken
  the message, persistent, into a durable queue.
* Task queues are declared with ``x-max-priority`` and a dead-letter route to ``<queue>.dlq``,
  for what RabbitMQ itself dead-letters (a message past a TTL policy, a queue overflow, a
  rejection by a Celery worker). kq's own rejections publish a copy there with kq's reason
  headers and ack the original (see :meth:`kq.kombu_transport.KombuTransport.reject`), since
  RabbitMQ's ``x-death`` has no room for a reason.
  RabbitMQ refuses (406) to redeclare a queue with other arguments; such a queue (declared by
  Celery, say) is used as it is, with a warning, so kq never fails to start on it.
* Delays without holding messages in the worker: a message due in *d* ms waits in the queue
  ``<queue>.delay.<ttl>``, whose ``x-message-ttl`` is *d* rounded up to
  :data:`DELAY_PRECISION_BITS` significant bits, and which dead-letters expired messages into
  ``<queue>``. Every message of one delay queue has the same TTL, so expiring at the head is
  exact (per-message TTLs in one queue would wait behind a longer one).
* Acks of a run of deliveries go out as one ``basic.ack(multiple=True)``.
* ``publish_many`` waits once for the confirms of a whole batch (:mod:`kq_amqp.confirms`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from amqp.exceptions import PreconditionFailed

from kq.config import safe_url
from kq.exceptions import BrokerUnavailable, ConfigurationError, PluginError
from kq.kombu_transport import KombuTransport, kombu_errors
from kq.transport import DEAD_LETTER_SUFFIX, Envelope, TransportCapabilities, dead_letter_queue

from . import TRANSPORT_CAPABILITIES
from .confirms import publish_confirmed

log = logging.getLogger("kq.amqp")

#: A delay keeps this many significant bits when it is rounded up to its delay queue's TTL, so
#: a delayed message arrives less than 1/128 of its delay late (never early), and one octave of
#: delays (1-2 s, 1-2 min, ...) needs at most 128 delay queues.
DELAY_PRECISION_BITS = 8
#: How long a delay queue outlives its TTL once unused (``x-expires`` = TTL + this); a publisher
#: redeclares it after half this time, so a waiting message always finds its queue alive.
DELAY_QUEUE_LEASE_MS = 60_000
#: The longest wait one delay queue provides (Erlang timers stop at 2**32 - 1 ms, ~49 days;
#: this keeps TTL + lease below 2**31). A message due later arrives early and the worker holds
#: it until it is due, as for a broker without native delay.
MAX_DELAY_MS = 2**31 - 1 - DELAY_QUEUE_LEASE_MS
QUEUE_TYPES = ("classic", "quorum")
#: Default AMQP heartbeat (s) of consuming connections: a silently dead one is noticed within
#: two of them (see "Heartbeats" in :mod:`kq.kombu_transport`).
HEARTBEAT = 30.0
#: Default bound (s) on every wait for RabbitMQ's answer (a publish's confirm, a declare, a
#: channel opening) and on every write, as py-amqp's ``read_timeout``/``write_timeout``: over
#: a connection that went silent they would wait forever. Then ``BrokerUnavailable`` is raised,
#: and the client's publish retries (or the worker's reconnection) take over.
IO_TIMEOUT = 30.0


def delay_bucket(delay_ms: int) -> int:
    """``delay_ms`` rounded up to at most :data:`DELAY_PRECISION_BITS` significant bits."""
    shift = max(delay_ms.bit_length() - DELAY_PRECISION_BITS, 0)
    return -(-delay_ms >> shift) << shift


class AMQPTransport(KombuTransport):
    """RabbitMQ through py-amqp. Options (``broker_transport_options``), besides kombu's own:

    ``queue_type``: ``"classic"`` (default) or ``"quorum"`` for task queues and their dead-letter
    queues. ``max_priority``: the queues' ``x-max-priority`` (default 10; ``None`` for none; must
    be ``None`` for quorum queues, which RabbitMQ 3.x gives no priorities). ``dead_letter``:
    route rejected messages to ``<queue>.dlq`` (default true). Setting both off declares queues
    exactly as Celery does by default. ``prefetch_count``: see :mod:`kq.kombu_transport`.
    ``heartbeat``: seconds between AMQP heartbeats on consuming connections (default
    :data:`HEARTBEAT`; 0 for none): a connection that went silent is given up after two.
    py-amqp's ``read_timeout`` and ``write_timeout`` default to :data:`IO_TIMEOUT`.
    """

    capabilities: ClassVar[TransportCapabilities] = TRANSPORT_CAPABILITIES
    transport_defaults: ClassVar[Mapping[str, Any]] = {
        "confirm_publish": True,
        "read_timeout": IO_TIMEOUT,
        "write_timeout": IO_TIMEOUT,
    }
    adapter_options: ClassVar[frozenset[str]] = KombuTransport.adapter_options | {
        "queue_type",
        "max_priority",
        "dead_letter",
    }
    default_heartbeat: ClassVar[float] = HEARTBEAT

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.queue_type: str = self.options.get("queue_type", "classic")
        if self.queue_type not in QUEUE_TYPES:
            raise _invalid("queue_type", self.queue_type, "'classic' or 'quorum'")
        quorum = self.queue_type == "quorum"
        self.max_priority: int | None = self.options.get("max_priority", None if quorum else 10)
        if self.max_priority is not None and (
            type(self.max_priority) is not int or not 1 <= self.max_priority <= 255 or quorum
        ):
            allowed = "None for quorum queues" if quorum else "a whole number 1-255 or None"
            raise _invalid("max_priority", self.max_priority, allowed)
        self.dead_letter: bool = self.options.get("dead_letter", True)
        if not isinstance(self.dead_letter, bool):
            raise _invalid("dead_letter", self.dead_letter, "true or false")

    def _reset(self) -> None:
        super()._reset()
        #: delay queue -> monotonic time this connection last declared it
        self._delay_declared: dict[str, float] = {}
        #: the channel batches are published on, and its next publish sequence number
        self._batch_channel: Any = None
        self._batch_sequence = 1

    # -- queues -----------------------------------------------------------------------------

    def _declare_task_queue(self, name: str) -> None:
        kind = {"x-queue-type": "quorum"} if self.queue_type == "quorum" else {}
        if name.endswith(DEAD_LETTER_SUFFIX):
            # Read to inspect or replay dead letters: declared as kq declares it for its queue.
            declarations = [(name, kind)]
        else:
            arguments: dict[str, Any] = dict(kind)
            if self.max_priority is not None:
                arguments["x-max-priority"] = self.max_priority
            declarations = [(name, arguments)]
            if self.dead_letter:
                arguments["x-dead-letter-exchange"] = ""
                arguments["x-dead-letter-routing-key"] = dead_letter_queue(name)
                declarations.append((dead_letter_queue(name), kind))

        def declare(channel: Any) -> None:
            for queue, queue_arguments in declarations:
                channel.queue_declare(queue, durable=True, auto_delete=False, arguments=queue_arguments)

        try:
            self._aside(declare)
        except PreconditionFailed as exc:
            log.warning(
                "kq: queue %s exists with other arguments than kq's, so kq uses it as it is "
                "(its own priorities and dead-lettering, if any): %s",
                name,
                exc.reply_text,
            )

    def _dead_letters(self) -> bool:
        return self.dead_letter

    def _route(self, queue: str, eta: datetime | None) -> str:
        """``queue`` for a message due now, else the delay queue that feeds it when due."""
        if eta is None:
            return queue
        delay = math.ceil((eta.timestamp() - time.time()) * 1000)
        if delay <= 0:
            return queue
        ttl = delay_bucket(min(delay, MAX_DELAY_MS))
        name = f"{queue}.delay.{ttl}"
        now = time.monotonic()
        if now - self._delay_declared.get(name, -math.inf) >= DELAY_QUEUE_LEASE_MS / 2000:
            arguments = {
                "x-message-ttl": ttl,
                "x-expires": ttl + DELAY_QUEUE_LEASE_MS,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue,
            }
            try:
                self._aside(
                    lambda channel: channel.queue_declare(
                        name, durable=True, auto_delete=False, arguments=arguments
                    )
                )
            except PreconditionFailed as exc:
                raise PluginError(f"cannot use delay queue {name}: {exc.reply_text}") from exc
            self._delay_declared[name] = now
        return name

    # -- batches ----------------------------------------------------------------------------

    def publish_many(self, items: Iterable[tuple[str, Envelope]]) -> None:
        """Publish a batch with one wait for RabbitMQ's confirms instead of one per message,
        and return once every message is confirmed; without confirms (``confirm_publish`` off),
        one publish after the other.

        Batches go out on a channel of their own, so that only they advance its publish
        sequence: the main channel's also counts py-amqp's one-by-one confirmed publishes, from
        a start py-amqp chooses and restarts when it reopens the channel after a channel error.
        A nack raises :class:`~kq.exceptions.BrokerUnavailable`, as it does for one publish, once
        every message of the batch is answered; the kernel then publishes the whole batch again,
        which may deliver the acked ones twice (at-least-once delivery allows that).
        """
        batch = list(items)
        if not batch:
            return
        self._open()
        with kombu_errors(self._connection, self.url):
            if not self._channel.connection.confirm_publish:
                super().publish_many(batch)
                return
            for queue in dict.fromkeys(queue for queue, _ in batch):
                self._ensure_queue(queue)
            channel = self._batch_channel or self._open_batch_channel()
            messages = [(self._message(channel, envelope), queue) for queue, envelope in batch]
            first, self._batch_sequence = self._batch_sequence, self._batch_sequence + len(batch)
            try:
                nacked = publish_confirmed(self._connection, channel, first, messages)
            except BaseException:
                # Its sequence is unknown now. Not closed here: the connection may be broken,
                # and the kernel closes the whole instance after BrokerUnavailable anyway.
                self._batch_channel = None
                raise
        if nacked:
            queues = ", ".join(dict.fromkeys(queue for queue, _ in batch))
            raise BrokerUnavailable(
                f"RabbitMQ at {safe_url(self.url)} refused (nacked) {nacked} of {len(batch)} "
                f"messages published to {queues} (a full queue with x-overflow reject-publish?)"
            )

    def _open_batch_channel(self) -> Any:
        assert self._connection is not None
        channel = self._connection.channel()
        channel.confirm_select()
        self._batch_channel, self._batch_sequence = channel, 1
        return channel

    # -- acks -------------------------------------------------------------------------------

    def _send_acks(self, messages: list[Any]) -> None:
        """One ``basic.ack(multiple=True)`` when no older delivery of the channel is unsettled
        (it would be acked too), else one ack each."""
        last = max(messages, key=lambda message: message.delivery_tag)
        oldest = next(iter(self._unsettled), None)  # insertion order is delivery order
        if len(messages) > 1 and (oldest is None or oldest > last.delivery_tag):
            last.ack(multiple=True)
        else:
            super()._send_acks(messages)


def _invalid(option: str, value: Any, allowed: str) -> ConfigurationError:
    return ConfigurationError(f"broker_transport_options[{option!r}] must be {allowed}, got {value!r}")
