"""The ``sqs://`` broker: the kernel's kombu adapter on kombu's SQS transport, plus what kq needs.

Messages are kombu's SQS messages (the kombu envelope as JSON, base64-encoded), so Celery
clients and workers on the same queues read and write them. What this module adds to kombu's
transport (:class:`KombuSQSTransport`, a subclass passed to kombu as the transport class):

* **Fetch timeouts hold.** kombu long-polls every ``ReceiveMessage`` for ``wait_time_seconds``
  whatever the caller's timeout; here each poll waits at most the fetch's remaining time,
  rounded up to whole seconds (SQS counts in seconds), and never more than the option. A fetch
  with timeout 0 (the worker topping up its prefetch window) is a short poll.
* **Given back means visible now.** A message the consumer returns (``reject(requeue=True)``,
  ``close()``) has its visibility timeout set to 0, where kombu sets it to
  ``wait_time_seconds``.
* **Leases survive the connection** (``visibility_timeout`` capability): a receipt handle acks
  or returns its message from any client, so after a failure the worker settles the deliveries
  of the old instance through a new one; :meth:`SQSTransport.disconnect` leaves them leased.
* ``redelivered`` is true when SQS has handed the message out before (``ApproximateReceiveCount``).
* ``eta`` within 15 minutes is SQS's ``DelaySeconds`` (rounded up to a second); a later one is
  sent with the longest delay and the worker holds it when it arrives early. FIFO queues take
  no per-message delay: there the message arrives at once and the worker holds it.
* FIFO queues (names ending in ``.fifo``): ``MessageDeduplicationId`` from the task id and its
  retry count, ``MessageGroupId`` per task (default) or per queue (``fifo_group_by``).
* **Batches.** ``publish_many`` (``send_many``, groups, chords) sends kombu's SQS message,
  built here exactly as kombu builds it, ten at a time with ``SendMessageBatch``; acks delete
  ten at a time with ``DeleteMessageBatch`` (kombu sends one request per message for both).
* ``kq purge`` receives and deletes ready messages rather than calling ``PurgeQueue``.
* ``endpoint_url`` as an option (LocalStack, ElasticMQ, moto), besides kombu's URL host form.
* Throttling and 5xx answers (after boto3's own retries) raise ``BrokerUnavailable``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, ParamSpec, TypeVar

import attrs
from botocore.exceptions import ClientError
from kombu.transport.SQS import Channel as KombuSQSChannel
from kombu.transport.SQS import Transport as KombuSQSBase
from kombu.transport.SQS.exceptions import DoesNotExistQueueException
from kombu.utils.json import dumps
from kombu.utils.objects import cached_property

from kq.config import safe_url
from kq.exceptions import BrokerUnavailable, ConfigurationError, PluginError
from kq.kombu_transport import KombuTransport, unavailable_error
from kq.redact import scrub
from kq.transport import Delivery, Envelope, TransportCapabilities, dead_letter_headers, dead_letter_queue

from . import TRANSPORT_CAPABILITIES

log = logging.getLogger("kq.sqs")

#: SQS holds a message at most this long (DelaySeconds).
MAX_DELAY = 900
#: Entries of one SendMessageBatch or DeleteMessageBatch, and the bodies' total size in one
#: SendMessageBatch (SQS's smallest limit: 256 KiB, or 1 MiB on accounts that have it).
MAX_BATCH, MAX_BATCH_BYTES = 10, 256 * 1024
#: The longest long poll SQS allows, and the default cap of each poll's wait.
MAX_WAIT = 20
FIFO_SUFFIX = ".fifo"
FIFO_GROUPS = ("task", "queue")
#: Error codes that mean "try again later", not "this request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMS.ThrottlingException",
    }
)
#: A receipt handle that no longer names a leased message: it was deleted, or handed out again.
STALE_HANDLE_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidParameterValue",
        "AWS.SimpleQueueService.NonExistentQueue",
        "MessageNotInflight",
    }
)
#: What SQS accepts as a deduplication or group id.
_TOKEN = re.compile(r"[!-~]{1,128}")

R = TypeVar("R")
P = ParamSpec("P")
T = TypeVar("T", bound="SQSTransport")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _transient(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return _code(exc) in TRANSIENT_CODES or status >= 500


def _translated(method: Callable[Concatenate[T, P], R]) -> Callable[Concatenate[T, P], R]:
    """Let a public method raise BrokerUnavailable for kombu's connection errors (botocore's,
    sockets) and for SQS's "try again later" answers; other errors are the caller's."""

    @functools.wraps(method)
    def wrapper(self: T, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except BrokerUnavailable:
            raise
        except Exception as exc:
            if _transient(exc):
                raise BrokerUnavailable(
                    f"SQS at {safe_url(self.url)} failed: {scrub(str(exc), self.url)}"
                ) from exc
            error = unavailable_error(exc, self._connection, self.url)
            if error is None:
                raise
            raise error from exc

    return wrapper


def _token(value: str) -> str:
    """``value`` if SQS accepts it as a deduplication or group id, else a digest of it."""
    return value if _TOKEN.fullmatch(value) else hashlib.sha256(value.encode()).hexdigest()


class Channel(KombuSQSChannel):
    """kombu's SQS channel with the changes listed in the module docstring."""

    if TYPE_CHECKING:  # what kq-sqs calls of kombu's channel, which kombu leaves unannotated

        def _resolve_queue_url(self, queue: str) -> str: ...
        def _new_queue(self, queue: str, **kwargs: Any) -> str: ...
        def sqs(self, queue: str | None = None) -> Any: ...
        def canonical_queue_name(self, queue_name: str) -> str: ...

    #: ``time.monotonic()`` by which the fetch in progress must return; ``None`` outside a
    #: fetch's first wait, when every poll is a short one.
    deadline: float | None = None
    #: boto3 clients by everything that makes them, shared by every channel in the process
    #: (boto3's clients are thread-safe): kombu makes one per channel, and each costs tens of
    #: milliseconds (the service model is loaded) while ``depth`` and ``purge`` open a channel
    #: each.
    _clients: ClassVar[dict[tuple[Any, ...], Any]] = {}
    _clients_lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def wait_time_seconds(self) -> int:  # kombu's is a cached_property of the option
        """The ``WaitTimeSeconds`` of the next ``ReceiveMessage``: the fetch's remaining time
        rounded up, at most the ``wait_time_seconds`` option (default :data:`MAX_WAIT`)."""
        if self.deadline is None:
            return 0
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return 0
        return min(int(self.transport_options.get("wait_time_seconds", MAX_WAIT)), math.ceil(remaining))

    def new_sqs_client(
        self,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        session_token: str | None = None,
    ) -> Any:
        key = (
            region,
            access_key_id,
            secret_access_key,
            session_token,
            self.endpoint_url,
            self.is_secure,
            repr(self.transport_options.get("client-config")),
        )
        kombus: Any = super()  # kombu leaves it unannotated
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = kombus.new_sqs_client(
                    region, access_key_id, secret_access_key, session_token
                )
            return client

    @cached_property
    def endpoint_url(self) -> str | None:
        endpoint: str | None = self.transport_options.get("endpoint_url") or super().endpoint_url
        return endpoint

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        """Whether the queue exists, so that looking at a missing one (``depth``, ``purge``)
        does not create it, as kombu would."""
        try:
            self._resolve_queue_url(queue)
        except DoesNotExistQueueException:
            return False
        return True

    def _purge(self, queue: str) -> int:
        """Receive and delete ready messages, ten at a time, until a poll finds none; return
        how many. Not ``PurgeQueue``: that also deletes messages in flight (kq's purge leaves
        them to their consumers), takes up to a minute, and may run once a minute per queue."""
        queue_url = self._new_queue(queue)
        client = self.sqs(queue=self.canonical_queue_name(queue))
        deleted = 0
        while True:
            messages = client.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return deleted
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
            )
            deleted += len(messages)

    def _restore(self, message: Any, unwanted_delivery_info: Any = None) -> None:
        """Make a received message visible again at once (kombu waits ``wait_time_seconds``).
        Its receipt handle is dropped from the message, so that nothing acks it later."""
        info = message.delivery_info
        info.pop("sqs_message", None)
        queue_url = info.pop("sqs_queue", None) or self._new_queue(info["routing_key"])
        self.sqs(queue=self.canonical_queue_name(info["routing_key"])).change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message.properties["delivery_tag"], VisibilityTimeout=0
        )


class KombuSQSTransport(KombuSQSBase):
    """kombu's SQS transport with :class:`Channel`."""

    Channel = Channel


class SQSTransport(KombuTransport):
    """Amazon SQS. Options (``broker_transport_options``), besides kombu's own SQS options
    (``predefined_queues``, ``sqs-creation-attributes``, ``client-config``, ...):

    ``region``; ``endpoint_url`` (LocalStack, ElasticMQ, moto); ``visibility_timeout``:
    seconds a received message stays invisible, for queues kq creates (kombu's default 1800);
    ``wait_time_seconds``: the longest long poll, 0-20 (default 20; 0 short-polls);
    ``queue_name_prefix``: put in front of every queue name; ``fifo_group_by``: ``"task"``
    (default: each task its own message group, delivered in parallel) or ``"queue"`` (one group
    per queue: strictly in order, one batch in flight at a time); ``prefetch_count``: see
    :mod:`kq.kombu_transport`. Credentials: the URL's user and password
    (``sqs://KEY_ID:SECRET@``, URL-quoted), else boto3's usual chain.
    """

    capabilities: ClassVar[TransportCapabilities] = TRANSPORT_CAPABILITIES
    kombu_transport: ClassVar[type | None] = KombuSQSTransport
    adapter_options: ClassVar[frozenset[str]] = KombuTransport.adapter_options | {"fifo_group_by"}

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.fifo_group_by: str = self.options.get("fifo_group_by", "task")
        if self.fifo_group_by not in FIFO_GROUPS:
            raise ConfigurationError(
                f"broker_transport_options['fifo_group_by'] must be 'task' or "
                f"'queue', got {self.fifo_group_by!r}"
            )
        wait = self.options.get("wait_time_seconds", MAX_WAIT)
        if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= MAX_WAIT:
            raise ConfigurationError(
                f"broker_transport_options['wait_time_seconds'] must be a whole "
                f"number of seconds 0-{MAX_WAIT}, got {wait!r}"
            )

    # -- publishing -------------------------------------------------------------------------

    @_translated
    def publish(self, queue: str, envelope: Envelope, *, eta: datetime | None = None) -> None:
        channel = self._open()
        self._ensure_queue(queue)
        entry = self._entry(channel, queue, envelope, eta)
        channel.sqs(queue=channel.canonical_queue_name(queue)).send_message(
            QueueUrl=channel._new_queue(queue), **entry
        )

    @_translated
    def publish_many(self, items: Iterable[tuple[str, Envelope]]) -> None:
        """``SendMessageBatch``: up to ten messages of one queue a request (and at most
        :data:`MAX_BATCH_BYTES` of bodies), in order."""
        channel = self._open()
        batches: dict[str, list[dict[str, Any]]] = {}
        for queue, envelope in items:
            self._ensure_queue(queue)
            batches.setdefault(queue, []).append(self._entry(channel, queue, envelope, None))
        for queue, entries in batches.items():
            client = channel.sqs(queue=channel.canonical_queue_name(queue))
            queue_url = channel._new_queue(queue)
            for chunk in _chunks(entries):
                answer = client.send_message_batch(
                    QueueUrl=queue_url, Entries=[{"Id": str(n), **entry} for n, entry in enumerate(chunk)]
                )
                failed = answer.get("Failed") or []
                if any(not f.get("SenderFault") for f in failed):
                    raise BrokerUnavailable(
                        f"SQS refused {len(failed)} message(s) of a batch for "
                        f"{queue} for now: {failed[0].get('Message')}"
                    )
                if failed:
                    raise PluginError(
                        f"SQS refused {len(failed)} message(s) of a batch for {queue}: "
                        f"{failed[0].get('Code')}: {failed[0].get('Message')}"
                    )

    def _entry(self, channel: Any, queue: str, envelope: Envelope, eta: datetime | None) -> dict[str, Any]:
        """The ``SendMessage`` parameters of ``envelope``: kombu's SQS message (kombu's envelope,
        with the body in its body encoding, as JSON, base64-encoded unless the
        ``sqs_base64_encoding`` option is off), so Celery and kombu read it as their own; plus
        the delay, or a FIFO queue's deduplication and group ids."""
        message = self._message(channel, envelope)
        channel._inplace_augment_message(message, "", queue)
        body = dumps(message)
        entry: dict[str, Any] = {
            "MessageBody": base64.b64encode(body.encode()).decode() if channel.sqs_base64_encoding else body
        }
        if queue.endswith(FIFO_SUFFIX):
            headers = envelope.headers if isinstance(envelope.headers, Mapping) else {}
            task_id = str(headers.get("id") or uuid.uuid4().hex)
            entry["MessageDeduplicationId"] = _token(f"{task_id}:{headers.get('retries', 0)}")
            entry["MessageGroupId"] = _token(task_id if self.fifo_group_by == "task" else queue)
        elif eta is not None:
            delay = math.ceil(eta.timestamp() - time.time())
            if delay > 0:
                entry["DelaySeconds"] = min(delay, MAX_DELAY)
        return entry

    # -- consuming --------------------------------------------------------------------------

    @_translated
    def fetch(self, queues: Sequence[str], limit: int, timeout: float) -> list[Delivery]:
        wanted = tuple(queues)
        if wanted != self._consuming:
            self._consume(wanted, limit)
        connection, channel, buffer = self._connection, self._channel, self._buffer
        assert connection is not None
        deadline = time.monotonic() + timeout
        while not buffer:
            channel.deadline = deadline
            try:
                connection.drain_events(timeout=max(deadline - time.monotonic(), 0))
            except TimeoutError:  # socket.timeout, as kombu raises it
                break
            finally:
                channel.deadline = None
        while buffer and len(buffer) < limit:  # top up with short polls
            try:
                connection.drain_events(timeout=0)
            except TimeoutError:
                break
        return [_redelivered(buffer.popleft()) for _ in range(min(limit, len(buffer)))]

    def _send_acks(self, messages: list[Any]) -> None:
        """``DeleteMessageBatch``, up to ten receipt handles of one queue a request. A handle
        SQS refuses (it went stale: the message was handed out again after its visibility
        timeout) is logged; that message is someone else's now."""
        channel = self._channel
        by_queue: dict[tuple[str, str], list[Any]] = {}
        for message in messages:
            info = message.delivery_info
            if info.get("sqs_message") and info.get("sqs_queue"):
                by_queue.setdefault((info["sqs_queue"], info.get("routing_key", "")), []).append(message)
            else:
                channel.qos.ack(message.delivery_tag)
        for (queue_url, queue), settled in by_queue.items():
            client = channel.sqs(queue=channel.canonical_queue_name(queue) if queue else None)
            for start in range(0, len(settled), MAX_BATCH):
                chunk = settled[start : start + MAX_BATCH]
                answer = client.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m.delivery_info["sqs_message"]["ReceiptHandle"]}
                        for n, m in enumerate(chunk)
                    ],
                )
                for failure in answer.get("Failed") or ():
                    log.warning(
                        "kq: SQS did not delete an acked message from %s: %s: %s",
                        queue,
                        failure.get("Code"),
                        failure.get("Message"),
                    )
                for message in chunk:
                    message.delivery_info.pop("sqs_message", None)  # settled: nothing acks it again
                    channel.qos.ack(message.delivery_tag)  # kombu's bookkeeping: the prefetch slot

    @_translated
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Ack this instance's deliveries through kombu, and those another instance fetched
        (before a failure) with their receipt handles."""
        foreign = [d for d in deliveries if not self._owns(d)]
        super().ack([d for d in deliveries if self._owns(d)])
        for delivery in foreign:
            self._settle_foreign(
                delivery,
                lambda client, url, handle: client.delete_message(QueueUrl=url, ReceiptHandle=handle),
            )

    @_translated
    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        if self._owns(delivery):
            return super().reject(delivery, requeue=requeue, reason=reason)
        if requeue:
            self._settle_foreign(
                delivery,
                lambda client, url, handle: client.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0
                ),
            )
            return
        if "sqs_message" not in delivery.tag.delivery_info:
            return  # settled already
        envelope = delivery.envelope
        self.publish(
            dead_letter_queue(delivery.queue),
            attrs.evolve(envelope, headers=dead_letter_headers(envelope.headers, delivery.queue, reason)),
        )
        self.ack([delivery])

    def _owns(self, delivery: Delivery) -> bool:
        message = delivery.tag
        return self._unsettled.get(message.delivery_tag) is message

    def _settle_foreign(self, delivery: Delivery, action: Callable[[Any, str, str], Any]) -> None:
        """``action(client, queue_url, receipt_handle)`` for a delivery another instance
        fetched; a delivery settled already, or whose handle has gone stale (its message was
        deleted or handed out again), is left alone."""
        info = delivery.tag.delivery_info
        sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
        if not sqs_message or not queue_url:
            return
        channel = self._open()
        try:
            action(
                channel.sqs(queue=channel.canonical_queue_name(delivery.queue)),
                queue_url,
                sqs_message["ReceiptHandle"],
            )
        except ClientError as exc:
            if _code(exc) not in STALE_HANDLE_CODES:
                raise
        info.pop("sqs_message", None)

    # -- the rest, with SQS's transient errors translated too -------------------------------

    @_translated
    def ack_and_fetch(
        self, acks: Sequence[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        return super().ack_and_fetch(acks, queues, limit, timeout)

    @_translated
    def purge(self, queue: str) -> int:
        return super().purge(queue)

    @_translated
    def depth(self, queue: str) -> int:
        return super().depth(queue)

    def disconnect(self) -> None:
        """Drop the connection and leave what it fetched leased: the worker acks it through a
        new instance (the receipt handles stay valid), or SQS hands it out again after the
        visibility timeout."""
        if self._channel is not None:
            self._channel.do_restore = False
        super().disconnect()


def _redelivered(delivery: Delivery) -> Delivery:
    """``delivery`` marked redelivered when SQS has handed its message out before."""
    attributes = delivery.tag.delivery_info.get("sqs_message", {}).get("Attributes", {})
    if not delivery.redelivered and int(attributes.get("ApproximateReceiveCount", 1)) > 1:
        return attrs.evolve(delivery, redelivered=True)
    return delivery


def _chunks(entries: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``entries`` in runs of at most :data:`MAX_BATCH` whose bodies stay within
    :data:`MAX_BATCH_BYTES` (a body larger than that alone goes alone, and SQS judges it)."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        length = len(entry["MessageBody"])
        if chunk and (len(chunk) == MAX_BATCH or size + length > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += length
    if chunk:
        yield chunk
