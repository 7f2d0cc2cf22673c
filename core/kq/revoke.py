"""Revoking tasks: every worker, including one started later, skips a revoked task.

A revoke travels two ways. It is **persisted** in the result backend, so a worker that starts
later (or reconnects) still knows it: each revoke call takes the next number of the backend
counter ``kq.revoked`` and stores its ids under ``kq.revoked.<n>``, expiring after
``worker_revoked_expires``; a starting worker reads the latest :data:`LOAD_LIMIT` entries once.
And it is **broadcast** on the fan-out channel :data:`CHANNEL`, so running workers learn it at
once: each worker's :class:`Revocations` listens through a :class:`~kq.listener.Listener` (a
connection and a thread of its own, shared with remote control), and keeps the ids in a
dictionary the consumer looks up before it starts any job (no backend read per task).

``revoke()`` also marks each task REVOKED in the backend right away unless it already has a
ready result, so a client sees REVOKED even while no worker has met the message yet. A task
that is already running and is not terminated runs to its end, and its result replaces
REVOKED (docs/tasks.md, "Revoking").
"""

from __future__ import annotations

import json
import logging
import signal as signal_module
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from .backend import StoredResult
from .exceptions import TaskRevoked
from .listener import Handler, Listener
from .protocol import ResultMeta, decode_result, encode_result, exception_to_meta, utcnow
from .states import READY_STATES, REVOKED, SUCCESS
from .transport import Envelope

log = logging.getLogger("kq.revoke")

#: The fan-out channel revokes are broadcast on.
CHANNEL = "kq.revoke"
#: The backend counter numbering revoke calls, and the key of each call's entry.
SEQUENCE, ENTRY = "kq.revoked", "kq.revoked.{}"
#: Most revoke calls a starting worker reads back (the latest ones; older ones have usually
#: expired anyway).
LOAD_LIMIT = 10_000
#: Entries per backend read while loading.
LOAD_CHUNK = 500
#: How often the listener drops expired ids (seconds).
PRUNE_EVERY = 60.0


@attrs.frozen
class Revoke:
    """One revoke call, as broadcast and persisted."""

    task_ids: tuple[str, ...] = attrs.field(converter=tuple[str, ...])
    terminate: bool = False
    signal: str = "SIGTERM"

    def encode(self) -> bytes:
        return json.dumps(
            {"ids": list(self.task_ids), "terminate": self.terminate, "signal": self.signal}
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> Revoke:
        data = json.loads(body)
        ids = data["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("ids must be a list of task ids")
        return cls(ids, bool(data.get("terminate")), str(data.get("signal") or "SIGTERM"))


def revoke(app: Any, revoke: Revoke) -> None:
    """Persist ``revoke`` in the app's backend (when it has one that keeps counters), mark its
    tasks REVOKED unless they have a ready result, and broadcast it to running workers."""
    conf = app.conf
    # rpc:// results go to the client that sent each task: there is nothing to persist or mark.
    if conf.result_backend and not app.backend.capabilities.reply_to:
        backend = app.backend
        serializers, serializer, now = app.serializers, conf.result_serializer, utcnow()
        if backend.capabilities.counters:
            key = ENTRY.format(backend.incr(SEQUENCE))
            entry = ResultMeta(
                task_id=key,
                state=SUCCESS,
                result=json.loads(revoke.encode()),
                date_done=now,
                name="kq.revoke",
            )
            backend.store(
                StoredResult(key, SUCCESS, encode_result(entry, serializers, serializer)),
                conf.worker_revoked_expires,
            )
        else:
            log.warning(
                "kq: the result backend keeps no counters: this revoke reaches running "
                "workers only, not workers started later"
            )
        found = backend.get_many(revoke.task_ids)
        reason = exception_to_meta(TaskRevoked("revoked"))
        backend.store_many(
            [
                StoredResult(
                    task_id,
                    REVOKED,
                    encode_result(
                        ResultMeta(task_id=task_id, state=REVOKED, result=reason, date_done=now),
                        serializers,
                        serializer,
                    ),
                )
                for task_id, stored in zip(revoke.task_ids, found, strict=True)
                if stored is None or stored.state not in READY_STATES
            ],
            conf.result_expires,
        )
    if app.plugins.transport_for(conf.broker_url).capabilities.fanout:
        app.broadcast(CHANNEL, Envelope(revoke.encode(), "application/json"))


class Revocations:
    """A worker's view of revoked task ids, kept current by a :class:`~kq.listener.Listener`.

    :attr:`ids` maps each revoked id to when it may be forgotten (``time.monotonic()``); the
    consumer reads it without a lock (one thread writes, lookups are atomic). Every revoke
    heard is also passed to ``on_revoke`` (from the listener thread), so the worker can drop
    held messages and terminate running tasks.
    """

    def __init__(self, app: Any, on_revoke: Callable[[Revoke], None]) -> None:
        self.app = app
        self.ids: dict[str, float] = {}
        self._on_revoke = on_revoke
        self._expires = app.conf.worker_revoked_expires
        self._listener: Listener | None = None
        self._next_prune = time.monotonic() + PRUNE_EVERY

    def start(self, also: Mapping[str, Handler] | None = None) -> None:
        """Subscribe, then load the persisted revokes (in that order, so none made in between is
        missed), then listen in a daemon thread, on the same connection to the channels of
        ``also`` too (the worker's remote control). A transport without fan-out gets no
        listener: such a worker knows only the revokes made before it started."""
        conf = self.app.conf
        if not self.app.plugins.transport_for(conf.broker_url).capabilities.fanout:
            log.warning(
                "kq: the broker has no fan-out: this worker learns of revokes only when "
                "it starts, and takes no remote-control commands"
            )
            self.load()
            return
        listener = self._listener = Listener(
            self.app, {CHANNEL: self.heard, **(also or {})}, on_reconnect=self.load, tick=self._forget_expired
        )
        if listener.connect():
            try:
                self.load()
            except Exception as exc:  # the backend is down: the listener loads once it reconnects
                log.warning("kq: could not load revoked task ids (%s); trying again shortly", exc)
                listener.drop(exc)
        listener.start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()

    def load(self) -> None:
        """Read the latest persisted revokes that have not expired (a few backend reads)."""
        conf = self.app.conf
        if not conf.result_backend or not self.app.backend.capabilities.counters:
            return  # nothing was persisted (revoke() warned)
        backend, now = self.app.backend, time.time()
        last = backend.incr(SEQUENCE, 0)
        keys = [ENTRY.format(n) for n in range(max(1, last - LOAD_LIMIT + 1), last + 1)]
        loaded = 0
        for start in range(0, len(keys), LOAD_CHUNK):
            for stored in backend.get_many(keys[start : start + LOAD_CHUNK]):
                if stored is None:
                    continue
                try:
                    meta = decode_result(stored.payload, self.app.serializers, conf.result_serializer)
                    if meta.date_done is None:
                        raise ValueError("the record has no date_done")
                    remaining = self._expires - (now - meta.date_done.timestamp())
                    revoke = Revoke.decode(json.dumps(meta.result).encode())
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    log.error("kq: ignored a malformed revoke record %s: %s", stored.task_id, exc)
                    continue
                if remaining > 0:
                    loaded += self._add(revoke, remaining)
        if loaded:
            log.info("kq: %d revoked task ids loaded", loaded)

    def _add(self, revoke: Revoke, remaining: float) -> int:
        until = time.monotonic() + remaining
        for task_id in revoke.task_ids:
            self.ids[task_id] = until
        return len(revoke.task_ids)

    def heard(self, body: bytes) -> None:
        """Act on one revoke broadcast (a malformed one is logged and ignored)."""
        try:
            revoke = Revoke.decode(body)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("kq: ignored a malformed revoke broadcast: %s", exc)
            return
        self._add(revoke, self._expires)
        log.info(
            "kq: revoked %s%s",
            ", ".join(revoke.task_ids),
            f" (terminate with {revoke.signal})" if revoke.terminate else "",
        )
        try:
            self._on_revoke(revoke)
        except Exception:
            log.exception("kq: could not act on revoke of %s", revoke.task_ids)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        for task_id in [t for t, until in self.ids.items() if until <= now]:
            del self.ids[task_id]


def signal_name(sig: str | int) -> str:
    """``"SIGKILL"``, ``"kill"`` or ``9`` as ``"SIGKILL"``; a ValueError names a bad one."""
    if isinstance(sig, int):
        return signal_module.Signals(sig).name
    name = sig.upper() if sig.upper().startswith("SIG") else f"SIG{sig.upper()}"
    if name not in signal_module.Signals.__members__:
        raise ValueError(f"unknown signal {sig!r}")
    return name


def of(task_ids: str | Sequence[str], terminate: bool, sig: str | int) -> Revoke:
    """``revoke("id")`` and ``revoke(["id", ...])`` both work."""
    return Revoke((task_ids,) if isinstance(task_ids, str) else tuple(task_ids), terminate, signal_name(sig))
