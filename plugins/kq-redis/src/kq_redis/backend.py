"""The Redis result backend, in Celery's layout: so Celery and kq clients read each other's results.

A result is the payload at ``celery-task-meta-<id>`` (``SET ... PX``), and every store also
PUBLISHes the payload on a channel of that same name, as Celery's Redis backend does. The kernel's
payloads are Celery result metas that start with ``{"status": "<STATE>"``, which is where
:meth:`RedisBackend.get` reads the state from; only a payload that does not say its state that way
(another serializer, or an arbitrary payload) gets a second key, ``_kq.state.<id>``, with it.

``wait()`` is pushed, never polled: it SUBSCRIBEs to the result's channel, waits for Redis to
confirm, and only then reads the key, so a result stored in between is either read or announced.
An announcement that says its (ready) state is the result itself; any other makes the waiter
read the keys. So that an announced status is always the true one, a payload whose leading status
contradicts the state it is stored with (never a kernel-encoded one) is announced empty. Each
thread keeps one subscriber connection for its waits.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import redis
from redis.client import PubSub

from kq.backend import BackendCapabilities, ResultBackend, StoredResult
from kq.exceptions import BackendUnavailable
from kq.states import PENDING, READY_STATES

from .connection import BACKEND_OPTIONS, connection_pool, parse_options, unavailable_as

SCHEMES = ("redis", "rediss", "redis+socket")
META_PREFIX = "celery-task-meta-"
STATE_PREFIX = "_kq.state."
#: The leading ``"status"`` of a Celery result meta, in any JSON spacing.
_STATUS = re.compile(rb'\s*\{\s*"status"\s*:\s*"([A-Z_]{1,32})"')


def _status(payload: bytes) -> str | None:
    found = _STATUS.match(payload)
    return found.group(1).decode("ascii") if found else None


class RedisBackend(ResultBackend):
    """Results in Redis, shared by every process with the URL; expiry is Redis's own (PX).

    Options (``result_backend_options``): ``global_keyprefix`` (as Celery's), ``socket_timeout``
    (s, 30), ``socket_connect_timeout`` (s, 5).
    """

    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities(
        push=True, native_expiry=True, shared=True
    )

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        opts = parse_options(self.options, BACKEND_OPTIONS)
        self._pool = connection_pool(url, opts, SCHEMES)
        self._redis = redis.Redis(connection_pool=self._pool)
        self._prefix = opts.global_keyprefix
        # A read blocked longer than socket_timeout would look like a dead connection.
        self._max_block = opts.socket_timeout / 2
        self._local = threading.local()  # .pubsub: this thread's subscriber connection
        self._subscribers: list[PubSub] = []
        self._lock = threading.Lock()

    def _meta_key(self, task_id: str) -> str:
        return f"{self._prefix}{META_PREFIX}{task_id}"

    def _state_key(self, task_id: str) -> str:
        return f"{self._prefix}{STATE_PREFIX}{task_id}"

    @contextmanager
    def _io(self) -> Iterator[None]:
        with unavailable_as(BackendUnavailable, "Redis result backend", self.url):
            yield

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        """One MULTI: each payload, its state key when the payload does not carry the state
        (else the key is deleted, in case an earlier store wrote one), and its announcement."""
        if not results:
            return
        px = None if ttl is None else max(1, round(ttl * 1000))
        with self._io():
            pipe = self._redis.pipeline(transaction=True)
            for result in results:
                key = self._meta_key(result.task_id)
                pipe.set(key, result.payload, px=px)
                status = _status(result.payload)
                if status == result.state:
                    pipe.delete(self._state_key(result.task_id))
                else:
                    pipe.set(self._state_key(result.task_id), result.state, px=px)
                pipe.publish(key, result.payload if status in (None, result.state) else b"")
            pipe.execute()

    def get(self, task_id: str) -> StoredResult | None:
        with self._io():
            payload, state = self._redis.mget(self._meta_key(task_id), self._state_key(task_id))
        if payload is None:
            return None
        # A foreign payload that hides its state (Celery with msgpack results) reads as PENDING
        # here; the kernel decodes the payload itself for the real state.
        found = state.decode() if state is not None else _status(payload) or PENDING
        return StoredResult(task_id, found, payload)

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        """Subscribe, read, then sleep on the subscription until the result is ready.

        A thread's subscriber connection may have died since its last wait (a Redis restart):
        that failure is retried once on a new connection before it counts as unavailable.
        """
        if timeout is not None and timeout <= 0:
            return self.get(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            subscriber, reused = self._subscriber()
            try:
                with self._io():
                    return self._wait(subscriber, task_id, deadline)
            except BackendUnavailable:
                self._drop_subscriber()
                if not reused:
                    raise

    def _wait(self, subscriber: PubSub, task_id: str, deadline: float | None) -> StoredResult | None:
        channel = self._meta_key(task_id).encode()
        subscriber.subscribe(channel)
        try:
            if not self._confirmed(subscriber, channel, deadline):
                return self.get(task_id)
            found = self.get(task_id)
            while found is None or found.state not in READY_STATES:
                remaining = self._max_block if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return found
                message = subscriber.get_message(timeout=min(remaining, self._max_block))
                if message and message["type"] == "message" and message["channel"] == channel:
                    state = _status(message["data"])
                    if state in READY_STATES:
                        return StoredResult(task_id, state, message["data"])
                    found = self.get(task_id)
            return found
        finally:
            subscriber.unsubscribe(channel)  # its confirmation is skipped by the next wait

    def _confirmed(self, subscriber: PubSub, channel: bytes, deadline: float | None) -> bool:
        """Read until Redis confirms the subscription to ``channel`` (skipping what earlier waits
        left unread); False if ``deadline`` passes first."""
        while True:
            remaining = self._max_block if deadline is None else deadline - time.monotonic()
            message = subscriber.get_message(timeout=max(0.0, min(remaining, self._max_block)))
            if message is None:
                if remaining <= 0:
                    return False
            elif message["type"] == "subscribe" and message["channel"] == channel:
                return True

    def _subscriber(self) -> tuple[PubSub, bool]:
        """This thread's subscriber, and whether it served an earlier wait."""
        subscriber = getattr(self._local, "pubsub", None)
        if subscriber is not None:
            return subscriber, True
        subscriber = self._local.pubsub = self._redis.pubsub()
        with self._lock:
            self._subscribers.append(subscriber)
        return subscriber, False

    def _drop_subscriber(self) -> None:
        subscriber = getattr(self._local, "pubsub", None)
        if subscriber is not None:
            self._local.pubsub = None
            with self._lock:
                self._subscribers.remove(subscriber)
            subscriber.close()

    def forget(self, task_id: str) -> None:
        with self._io():
            self._redis.delete(self._meta_key(task_id), self._state_key(task_id))

    def close(self) -> None:
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.close()
        self._pool.disconnect()
