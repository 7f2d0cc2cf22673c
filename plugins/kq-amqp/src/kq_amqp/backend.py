"""The ``rpc://`` result backend: each result travels back to its client as an AMQP message.

A client's results come back on one queue of its own, ``kq.reply.<uuid>``, declared by
:meth:`RpcBackend.reply_queue` (the kernel puts it in every task message's ``reply_to``):
exclusive, so RabbitMQ deletes it with the client's connection and nobody else reads it. A
worker publishes each result there with ``correlation_id`` = task id, the state in the header
``kq-state`` and the result's ``ttl`` as the message's ``expiration``; it never declares the
queue, so a result for a client that is gone is dropped by RabbitMQ. From its first read on,
the client consumes its queue (no acks: the queue dies with the client anyway) in whichever
thread reads a result, and keeps what arrives by task id until it is forgotten or expires.

``get`` must see every result stored before it was called, even one still on its way. It
publishes a marker to its own queue and reads until the marker comes back: the queue is FIFO,
and a result is in the queue once the worker's publish is confirmed. (Cancelling the consumer
would flush deliveries in flight too, but then every later ``wait`` would consume again.)

Direct reply-to (``amq.rabbitmq.reply-to``) needs no queue at all, but RabbitMQ accepts it only
on the channel that consumes it, and kq publishes tasks on the broker transport's connection,
not the backend's; so kq declares a real queue, like Celery's rpc backend.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, ClassVar, TypeVar

import kombu

from kq.backend import BackendCapabilities, ResultBackend, StoredResult
from kq.config import safe_url
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.kombu_transport import connect, kombu_errors
from kq.states import READY_STATES

from . import RPC_CAPABILITIES

log = logging.getLogger("kq.amqp")

#: Header carrying a result's state; the body is the kernel's encoded result as it is.
STATE_HEADER = "kq-state"
#: The leading ``"status"`` of a JSON result meta: the state of a result that came without
#: :data:`STATE_HEADER`, from a Celery worker (whose rpc backend sends the meta alone).
_STATUS = re.compile(rb'\s*\{\s*"status"\s*:\s*"([A-Z_]{1,32})"')
#: Header of the markers :meth:`RpcBackend.get` sends itself.
MARK_HEADER = "kq-mark"
#: Longest one wait blocks on the socket before letting another thread take its turn.
DRAIN_SLICE = 0.25
#: How long ``get`` waits for its marker before it calls the connection broken.
SYNC_TIMEOUT = 30.0
R = TypeVar("R")


def broker_url_of(url: str, options: Mapping[str, Any]) -> str:
    """The AMQP address an rpc URL means: ``rpc+amqp://...`` carries it after the ``rpc+``;
    plain ``rpc://`` takes it from the ``broker_url`` option, which the app fills in with its
    own broker URL (a ``result_backend_options`` entry wins)."""
    scheme, _, rest = url.partition("://")
    if scheme != "rpc":
        return url[len("rpc+") :]
    if rest.strip("/"):
        raise ConfigurationError(
            f"result_backend {safe_url(url)!r}: rpc:// takes no address; "
            "write it as rpc+amqp://user:password@host:5672/vhost"
        )
    broker = options.get("broker_url")
    if not isinstance(broker, str) or broker.partition("://")[0] not in ("amqp", "amqps", "pyamqp"):
        shown = safe_url(broker) if isinstance(broker, str) else repr(broker)
        raise ConfigurationError(
            "result_backend 'rpc://' sends results through the app's broker, which must be "
            "RabbitMQ (amqp://); with another broker set result_backend_options="
            "{'broker_url': 'amqp://...'} or write the backend as "
            f"'rpc+amqp://user:password@host:5672/vhost' (broker_url: {shown})"
        )
    return broker


class RpcBackend(ResultBackend):
    """Results as messages to the client's reply queue. Options (``result_backend_options``):
    ``broker_url`` for plain ``rpc://``; every other one is a kombu transport option."""

    capabilities: ClassVar[BackendCapabilities] = RPC_CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.broker_url = broker_url_of(url, self.options)
        self._transport_options = {"confirm_publish": True}
        self._transport_options.update((k, v) for k, v in self.options.items() if k != "broker_url")
        self._sender = _Sender(self.broker_url, self._transport_options)
        self._reply_name = f"kq.reply.{uuid.uuid4().hex}"
        # The client side. One thread at a time uses the connection (it holds "the turn",
        # _busy); the others wait on _changed, which every arriving result notifies.
        self._connection: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._consumer: kombu.Consumer | None = None
        self._changed = threading.Condition()
        self._busy = False
        #: task id -> (result, monotonic expiry or None), in arrival order
        self._results: dict[str, tuple[StoredResult, float | None]] = {}
        self._marks: set[str] = set()

    # -- the worker's side ----------------------------------------------------------------

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        routed = [result for result in results if result.reply_to]
        if len(routed) < len(results):
            dropped = [result.task_id for result in results if not result.reply_to]
            log.warning(
                "kq: rpc backend dropped the result of %s: the task message named no "
                "reply queue to send it to",
                ", ".join(dropped),
            )
        if routed:
            self._sender.send(routed, ttl)

    # -- the client's side ----------------------------------------------------------------

    def reply_queue(self) -> str:
        with self._changed:
            watched = self._busy and self._connection is not None
        if not watched:  # else the thread reading the connection notices if it breaks
            with self._turn():
                # Reading what is pending notices a connection the broker closed (a restart
                # deletes the queue); reconnecting declares the queue again before the caller
                # sends a task that names it.
                self._io(partial(self._drain, 0))
        return self._reply_name

    def get(self, task_id: str) -> StoredResult | None:
        self._sync()
        with self._changed:
            return self._live(task_id)

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._changed:
                found = self._live(task_id)
                if found is not None and found.state in READY_STATES:
                    return found
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return found
                if self._busy:
                    self._changed.wait(remaining)
                    continue
                self._busy = True
            try:
                self._io(
                    partial(self._read, DRAIN_SLICE if remaining is None else min(remaining, DRAIN_SLICE))
                )
            finally:
                self._release()

    def forget(self, task_id: str) -> None:
        self._sync()  # else a result on its way would reappear after being forgotten
        with self._changed:
            self._results.pop(task_id, None)

    def cleanup(self) -> int:
        now = time.monotonic()
        with self._changed:
            expired = [
                k for k, (_, expires) in self._results.items() if expires is not None and expires <= now
            ]
            for task_id in expired:
                del self._results[task_id]
        return len(expired)

    def close(self) -> None:
        self._sender.close()
        with self._turn():
            self._disconnect()

    # -- the reply queue's connection (used by the thread holding the turn) ---------------

    def _reply_entity(self) -> kombu.Queue:
        """The reply queue: exclusive (only this client's connection may read it, and it goes
        away with it) and transient."""
        return kombu.Queue(self._reply_name, durable=False, exclusive=True, auto_delete=True)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        with self._changed:
            while self._busy:
                self._changed.wait()
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._changed:
            self._busy = False
            self._changed.notify_all()

    def _io(self, action: Callable[[], R], retry: bool = True) -> R:
        """``action()`` on the connection, connecting first; if the connection turns out to be
        broken, once more on a new one (which declares the reply queue again)."""
        if self._connection is None:
            self._connect()
        try:
            with kombu_errors(self._connection, self.broker_url, BackendUnavailable):
                return action()
        except BackendUnavailable:
            self._disconnect()
            if not retry:
                raise
        return self._io(action, retry=False)

    def _connect(self) -> None:
        """Connect and declare the reply queue; consuming waits for the first read, so that a
        client which never reads its results leaves them in the queue, where they expire."""
        connection, channel = connect(self.broker_url, self._transport_options, BackendUnavailable)
        try:
            with kombu_errors(connection, self.broker_url, BackendUnavailable):
                self._reply_entity()(channel).declare()
        except BaseException:
            connection.release()
            raise
        self._connection = connection
        self._producer = kombu.Producer(channel, auto_declare=False)

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._producer = self._consumer = None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # it is broken already; closing is a courtesy
                log.debug("kq: could not close the reply queue's connection", exc_info=True)

    def _drain(self, timeout: float) -> None:
        """Read whatever arrives within ``timeout`` seconds (everything pending if 0)."""
        assert self._connection is not None
        while True:
            try:
                self._connection.drain_events(timeout=timeout)
            except TimeoutError:
                return
            if timeout:
                return

    def _read(self, timeout: float) -> None:
        """Consume the reply queue (from the first read on) and :meth:`_drain`."""
        if self._consumer is None:
            assert self._producer is not None
            self._consumer = kombu.Consumer(
                self._producer.channel,
                [self._reply_entity()],
                no_ack=True,
                auto_declare=False,
                on_message=self._received,
            )
            self._consumer.consume()
        self._drain(timeout)

    def _sync(self) -> None:
        """Read the reply queue up to now: send a marker to it and read until it is back."""
        mark = uuid.uuid4().hex

        def until_marked() -> None:
            assert self._producer is not None
            self._producer.publish(
                b"", exchange="", routing_key=self._reply_name, headers={MARK_HEADER: mark}, delivery_mode=1
            )
            deadline = time.monotonic() + SYNC_TIMEOUT
            while mark not in self._marks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackendUnavailable(
                        f"reply queue {self._reply_name} at {safe_url(self.broker_url)} did not "
                        f"deliver a marker within {SYNC_TIMEOUT:.0f} s"
                    )
                self._read(remaining)
            self._marks.discard(mark)

        with self._turn():
            self._io(until_marked)

    def _received(self, message: Any) -> None:
        headers = message.headers or {}
        with self._changed:
            if MARK_HEADER in headers:
                self._marks.add(headers[MARK_HEADER])
                return
            task_id = message.properties.get("correlation_id")
            body = message.body
            if isinstance(body, str):  # py-amqp decodes a body sent as text (JSON)
                body = body.encode("utf-8")
            state = headers.get(STATE_HEADER) or _status(body)
            if not task_id or not state:
                log.warning(
                    "kq: ignored a message on reply queue %s that is not a kq result", self._reply_name
                )
                return
            now = time.monotonic()
            expiration = message.properties.get("expiration")
            expires = now + int(expiration) / 1000 if expiration else None
            self._results.pop(task_id, None)  # re-inserted last: the dict stays in arrival order
            self._results[task_id] = (StoredResult(task_id, state, body), expires)
            self._drop_expired_head(now)
            self._changed.notify_all()

    def _drop_expired_head(self, now: float) -> None:
        """Forget expired results at the old end of the buffer, so a client that never reads
        its results does not grow without bound (``cleanup`` sweeps them all)."""
        while self._results:
            task_id, (_, expires) = next(iter(self._results.items()))
            if expires is None or expires > now:
                return
            del self._results[task_id]

    def _live(self, task_id: str) -> StoredResult | None:
        """The unexpired result of ``task_id``; the caller holds ``_changed``."""
        entry = self._results.get(task_id)
        if entry is None:
            return None
        result, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._results[task_id]
            return None
        return result


def _status(body: bytes) -> str | None:
    found = _STATUS.match(body)
    return found.group(1).decode("ascii") if found else None


def _content_type(payload: bytes) -> tuple[str, str]:
    """What a result's payload is, for a Celery client reading it: a JSON meta (the kernel's
    default) says so, so that Celery decodes it; anything else travels as opaque bytes."""
    if payload[:10].lstrip().startswith(b"{"):
        return "application/json", "utf-8"
    return "application/octet-stream", "binary"


class _Sender:
    """The worker's side: one connection that publishes results for every pool thread in turn,
    each publish confirmed, so a stored result is in its reply queue (or dropped by RabbitMQ
    because the queue is gone) when ``store`` returns."""

    def __init__(self, url: str, transport_options: Mapping[str, Any]) -> None:
        self._url = url
        self._transport_options = transport_options
        self._lock = threading.Lock()
        self._connection: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None

    def send(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        with self._lock:
            try:
                if self._producer is None:
                    self._connection, channel = connect(
                        self._url, self._transport_options, BackendUnavailable
                    )
                    self._producer = kombu.Producer(channel, auto_declare=False)
                with kombu_errors(self._connection, self._url, BackendUnavailable):
                    for result in results:
                        content_type, encoding = _content_type(result.payload)
                        self._producer.publish(
                            result.payload,
                            exchange="",
                            routing_key=result.reply_to,
                            content_type=content_type,
                            content_encoding=encoding,
                            correlation_id=result.task_id,
                            headers={STATE_HEADER: result.state},
                            expiration=ttl,
                            delivery_mode=1,
                        )
            except BackendUnavailable:
                self._close()  # the next store connects again
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # it is broken already; closing is a courtesy
                log.debug("kq: could not close the result sender's connection", exc_info=True)
