"""The Redis result backend, in Celery's layout: so Celery and kq clients read each other's results.

A result is the payload at ``celery-task-meta-<id>`` (``SET ... PX``), and every store also
PUBLISHes the payload on a channel of that same name, as Celery's Redis backend does. The kernel's
payloads are Celery result metas that start with ``{"status": "<STATE>"``, which is where
:meth:`RedisBackend.get` reads the state from; only a payload that does not say its state that way
(another serializer, or an arbitrary payload) gets a second key, ``_kq.state.<id>``, with it.

``wait()`` is pushed, not polled, in one command: a ready result is also kept in a one-element
list, ``_kq.ready.<id>``, with the payload itself when it is small (``READY_INLINE`` bytes) and
an empty marker otherwise, and a waiter blocks on that list with ``BLMOVE key key``: the element
goes back where it was, so every waiter, now or later, is woken by it until the result expires.
A store that exists before the wait starts answers at once; there is no subscribe-then-read
window to cover. Results stored by a Celery worker have no such list (Celery only PUBLISHes), so
a waiter also reads the key between blocking slices that grow to ``FOREIGN_POLL_MAX`` seconds.

Counters (:meth:`RedisBackend.incr`) are plain integer keys, ``_kq.counter:<name>``, apart from
every result key, incremented and given their expiry in one MULTI. Claims
(:meth:`RedisBackend.claim`) are string keys, ``_kq.claim:<name>``, each taken or read by one
small script, so a claim costs one round trip whatever the server version.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import redis

from kq.backend import BackendCapabilities, ResultBackend, StoredResult
from kq.exceptions import BackendUnavailable
from kq.states import PENDING, READY_STATES

from . import BACKEND_CAPABILITIES, BACKEND_SCHEMES
from .connection import BACKEND_OPTIONS, Unavailable, connection_pool, parse_options
from .link import Links

META_PREFIX = "celery-task-meta-"
STATE_PREFIX = "_kq.state."
COUNTER_PREFIX = "_kq.counter:"
CLAIM_PREFIX = "_kq.claim:"
#: KEYS: the claim; ARGV: value, expiry (ms). Returns the holder, or false when this call took it.
CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
#: KEYS: the claim; ARGV: the value that must still hold it for it to be dropped.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
READY_PREFIX = "_kq.ready."
#: Largest payload copied into the ready list; a larger one is read from its key after the wake.
READY_INLINE = 4096
#: Blocking slices of a wait grow from the first to the last value (seconds); between slices
#: the waiter reads the result key, which is how it sees results stored by Celery workers.
FOREIGN_POLL_FIRST, FOREIGN_POLL_MAX = 0.05, 0.5
#: Task ids per MGET in :meth:`RedisBackend.get_many` (two keys each), all in one round trip.
GET_MANY_CHUNK = 500
#: The leading ``"status"`` of a Celery result meta, in any JSON spacing.
_STATUS = re.compile(rb'\s*\{\s*"status"\s*:\s*"([A-Z_]{1,32})"')


def _status(payload: bytes) -> str | None:
    found = _STATUS.match(payload)
    return found.group(1).decode("ascii") if found else None


def _stored(task_id: str, payload: bytes | None, state: bytes | None) -> StoredResult | None:
    """The result read from a task's meta and state keys."""
    if payload is None:
        return None
    # A foreign payload that hides its state (Celery with msgpack results) reads as PENDING
    # here; the kernel decodes the payload itself for the real state.
    found = state.decode() if state is not None else _status(payload) or PENDING
    return StoredResult(task_id, found, payload)


class RedisBackend(ResultBackend):
    """Results in Redis, shared by every process with the URL; expiry is Redis's own (PX).

    Options (``result_backend_options``): ``global_keyprefix`` (as Celery's), ``socket_timeout``
    (s, 30), ``socket_connect_timeout`` (s, 5).
    """

    capabilities: ClassVar[BackendCapabilities] = BACKEND_CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        opts = parse_options(self.options, BACKEND_OPTIONS)
        self._pool = connection_pool(url, opts, BACKEND_SCHEMES)
        self._redis = redis.Redis(connection_pool=self._pool)
        self._prefix = opts.global_keyprefix
        # A read blocked longer than socket_timeout would look like a dead connection.
        self._max_block = opts.socket_timeout / 2
        self._claim = self._redis.register_script(CLAIM)
        self._release = self._redis.register_script(RELEASE)
        self._io = Unavailable(BackendUnavailable, "Redis result backend", url)
        self._links = Links(self._pool)

    def _meta_key(self, task_id: str) -> str:
        return f"{self._prefix}{META_PREFIX}{task_id}"

    def _state_key(self, task_id: str) -> str:
        return f"{self._prefix}{STATE_PREFIX}{task_id}"

    def _ready_key(self, task_id: str) -> str:
        return f"{self._prefix}{READY_PREFIX}{task_id}"

    def _counter_key(self, key: str) -> str:
        return f"{self._prefix}{COUNTER_PREFIX}{key}"

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        """One MULTI: each payload, its state key when the payload does not carry the state
        (else the key is deleted, in case an earlier store wrote one), its announcement for
        Celery clients, and for a ready state the list kq's waiters block on."""
        if not results:
            return
        expiry: tuple[Any, ...] = () if ttl is None else ("PX", max(1, round(ttl * 1000)))
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        for result in results:
            key = self._meta_key(result.task_id)
            commands.append(("SET", key, result.payload, *expiry))
            status = _status(result.payload)
            if status == result.state:
                commands.append(("DEL", self._state_key(result.task_id)))
            else:
                commands.append(("SET", self._state_key(result.task_id), result.state, *expiry))
            commands.append(("PUBLISH", key, result.payload if status in (None, result.state) else b""))
            if result.state in READY_STATES:
                ready = self._ready_key(result.task_id)
                inline = status == result.state and len(result.payload) <= READY_INLINE
                commands += [("DEL", ready), ("RPUSH", ready, result.payload if inline else b"")]
                if expiry:
                    commands.append(("PEXPIRE", ready, expiry[1]))
        with self._io:
            self._links.run(*commands, ("EXEC",))

    def get(self, task_id: str) -> StoredResult | None:
        with self._io:
            [(payload, state)] = self._links.run(("MGET", self._meta_key(task_id), self._state_key(task_id)))
        return _stored(task_id, payload, state)

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """One round trip: a pipeline of MGETs, each of a chunk's meta and state keys."""
        if not task_ids:
            return []
        chunks = [task_ids[i : i + GET_MANY_CHUNK] for i in range(0, len(task_ids), GET_MANY_CHUNK)]
        with self._io:
            replies = self._links.run(
                *(
                    ("MGET", *(key for t in chunk for key in (self._meta_key(t), self._state_key(t))))
                    for chunk in chunks
                ),
            )
        values = [value for reply in replies for value in reply]
        return [_stored(t, values[2 * i], values[2 * i + 1]) for i, t in enumerate(task_ids)]

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        """Block on the result's ready list (see the module docstring); read the key between
        slices, for results stored by Celery workers, and at the deadline."""
        ready = self._ready_key(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        block = FOREIGN_POLL_FIRST
        while True:
            remaining = self._max_block if deadline is None else deadline - time.monotonic()
            woke = None
            if remaining > 0:
                with self._io:
                    [woke] = self._links.run(
                        (
                            "BLMOVE",
                            ready,
                            ready,
                            "RIGHT",
                            "LEFT",
                            max(0.001, round(min(block, remaining), 3)),
                        ),
                    )
                if woke:
                    state = _status(woke)
                    if state in READY_STATES:
                        return StoredResult(task_id, state, woke)
            found = self.get(task_id)
            if woke is not None or remaining <= 0 or (found is not None and found.state in READY_STATES):
                return found
            block = min(block * 2, FOREIGN_POLL_MAX)

    def forget(self, task_id: str) -> None:
        with self._io:
            self._redis.delete(self._meta_key(task_id), self._state_key(task_id), self._ready_key(task_id))

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        """INCRBY, then PEXPIRE (or PERSIST without ``expires``), in one MULTI."""
        name = self._counter_key(key)
        keep = ("PERSIST", name) if expires is None else ("PEXPIRE", name, max(1, round(expires * 1000)))
        with self._io:
            *_, (value, _) = self._links.run(
                ("MULTI",), ("INCRBY", name, amount), keep, ("EXEC",), idempotent=False
            )
        return int(value)

    def delete_counter(self, key: str) -> None:
        with self._io:
            self._redis.delete(self._counter_key(key))

    def claim(self, key: str, value: str, expires: float) -> str | None:
        with self._io:
            holder = self._claim(
                keys=[f"{self._prefix}{CLAIM_PREFIX}{key}"], args=[value, max(1, round(expires * 1000))]
            )
        return None if holder is None else holder.decode()

    def release(self, key: str, value: str) -> None:
        with self._io:
            self._release(keys=[f"{self._prefix}{CLAIM_PREFIX}{key}"], args=[value])

    def close(self) -> None:
        self._links.close()
        self._pool.disconnect()
