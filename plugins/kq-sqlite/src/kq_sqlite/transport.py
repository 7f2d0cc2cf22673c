"""The SQLite broker: one table of messages, claimed with leases.

A row is either *ready* (``ready = 1``: fetchable now) or *waiting* (``ready = 0``): held back
by an ``eta``, or leased to the consumer whose token is in ``lease`` until ``available_at``.
Every fetch first turns due waiting rows back into ready ones, so a delayed message becomes
visible and a lease whose consumer died without closing expires, with one indexed statement.
Keeping "ready" a plain column (not a comparison with the clock) lets the fetch query walk
the ``(queue, ready, rank DESC, id)`` index and stop after ``limit`` rows, however many delayed
or in-flight messages sit in the same queue.

Claiming is a single ``UPDATE ... RETURNING`` inside ``BEGIN IMMEDIATE``, so two processes can
never lease the same row; acks delete by id, which AUTOINCREMENT never reuses.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

from kq.exceptions import BrokerUnavailable, PluginError
from kq.transport import (
    Delivery,
    Envelope,
    Transport,
    TransportCapabilities,
    dead_letter_headers,
    dead_letter_queue,
)

from . import TRANSPORT_CAPABILITIES
from .db import connect, database_path, immediate, parse_options, unavailable_on_error

OPTIONS = ("visibility_timeout", "polling_interval", "synchronous", "busy_timeout")
# Bound parameters per statement; 999 is the smallest limit any SQLite build has had.
_MAX_VARIABLES = 900
_FIRST_PAUSE = 0.001

SCHEMA = """
CREATE TABLE IF NOT EXISTS kq_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    rank INTEGER NOT NULL,  -- priority clamped to 0-9: the sort key
    ready INTEGER NOT NULL,
    available_at REAL NOT NULL,
    lease TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    content_encoding TEXT NOT NULL,
    headers TEXT NOT NULL,
    priority INTEGER,  -- as published, None kept
    correlation_id TEXT,
    reply_to TEXT
);
CREATE INDEX IF NOT EXISTS kq_messages_ready ON kq_messages (queue, ready, rank DESC, id);
CREATE INDEX IF NOT EXISTS kq_messages_waiting ON kq_messages (available_at) WHERE ready = 0;
CREATE TABLE IF NOT EXISTS kq_broadcast_subscribers (
    queue TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS kq_broadcast_subscribers_channel
    ON kq_broadcast_subscribers (channel, expires_at);
"""

_FIELDS = (
    "rank, ready, available_at, body, content_type, content_encoding, headers, priority, "
    "correlation_id, reply_to"
)
_INSERT = f"INSERT INTO kq_messages (queue, {_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_BROADCAST = (
    f"INSERT INTO kq_messages (queue, {_FIELDS}) SELECT queue, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    f"FROM kq_broadcast_subscribers WHERE channel = ?"
)
_PROMOTE = "UPDATE kq_messages SET ready = 1, lease = NULL WHERE ready = 0 AND available_at <= ?"
_CLAIM = """
UPDATE kq_messages SET ready = 0, lease = ?, available_at = ?, deliveries = deliveries + 1
WHERE id IN (
    SELECT id FROM kq_messages WHERE queue = ? AND ready = 1 ORDER BY rank DESC, id LIMIT ?
)
RETURNING id, rank, deliveries, body, content_type, content_encoding, headers, priority,
    correlation_id, reply_to
"""
_REQUEUE = "UPDATE kq_messages SET ready = 1, lease = NULL WHERE id = ? AND lease = ?"
# A lease that already expired back to ready (lease NULL) may still be dead-lettered by its
# last holder; one that another consumer took since may not.
_DEAD_LETTER = """
UPDATE kq_messages SET queue = ?, ready = 1, lease = NULL, deliveries = 0, headers = ?
WHERE id = ? AND (lease = ? OR lease IS NULL)
"""
_DEPTH = """
SELECT (SELECT count(*) FROM kq_messages WHERE queue = ? AND ready = 1)
     + (SELECT count(*) FROM kq_messages WHERE ready = 0 AND available_at <= ? AND queue = ?)
"""
# An empty poll costs this one read: any ready message in these queues, or anything due.
_PROBE = (
    "SELECT EXISTS (SELECT 1 FROM kq_messages WHERE queue IN ({marks}) AND ready = 1) "
    "OR EXISTS (SELECT 1 FROM kq_messages WHERE ready = 0 AND available_at <= ?)"
)
_EXPIRED_SUBSCRIBERS = "FROM kq_broadcast_subscribers WHERE channel = ? AND expires_at < ?"


@unavailable_on_error(
    BrokerUnavailable,
    (
        "__init__",
        "publish",
        "publish_many",
        "fetch",
        "ack",
        "reject",
        "purge",
        "depth",
        "broadcast",
        "subscribe",
        "unsubscribe",
    ),
)
class SQLiteTransport(Transport):
    """A broker in one SQLite file, shared by any number of processes on this machine.

    Options: ``visibility_timeout`` (s, default 3600), ``polling_interval`` (longest sleep
    between polls of empty queues, s, default 0.05), ``synchronous`` (default NORMAL),
    ``busy_timeout`` (s, default 30).
    """

    capabilities: ClassVar[TransportCapabilities] = TRANSPORT_CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise PluginError(
                f"kq-sqlite's broker needs SQLite >= 3.35 (UPDATE ... RETURNING); this Python "
                f"links SQLite {sqlite3.sqlite_version}"
            )
        self.path = database_path(url)
        self._options = parse_options(self.options, OPTIONS)
        self._conn = connect(self.path, self._options, SCHEMA)
        # Guards the connection: the owning thread uses it, but close() may come from another.
        self._lock = threading.Lock()
        self._token = uuid.uuid4().hex
        self._held: set[int] = set()  # ids this instance leased and has not acked/rejected
        self._subscriptions: dict[str, str] = {}  # private queue -> channel
        self._renewed_at = 0.0
        self._turn = 0
        self._closed = False

    # -- publishing -----------------------------------------------------------------------

    def publish(self, queue: str, envelope: Envelope, *, eta: datetime | None = None) -> None:
        row = (queue, *_fields(envelope, time.time(), eta))
        with self._lock:
            self._conn.execute(_INSERT, row)

    def publish_many(self, items: Iterable[tuple[str, Envelope]]) -> None:
        now = time.time()
        rows = [(queue, *_fields(envelope, now)) for queue, envelope in items]
        if rows:
            with self._lock, immediate(self._conn) as conn:
                conn.executemany(_INSERT, rows)

    # -- consuming ------------------------------------------------------------------------

    def fetch(self, queues: Sequence[str], limit: int, timeout: float) -> list[Delivery]:
        """Poll (SQLite cannot block) with a pause that doubles up to ``polling_interval``."""
        if not queues:
            raise ValueError("fetch needs at least one queue")
        deadline = time.monotonic() + timeout
        pause = _FIRST_PAUSE
        while True:
            batch = self._claim(queues, limit)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0 or self._closed:
                return batch
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self._options.polling_interval)

    def _claim(self, queues: Sequence[str], limit: int) -> list[Delivery]:
        """Lease up to ``limit`` ready messages in one transaction; an empty poll is one read."""
        now = time.time()
        with self._lock:
            if self._closed:
                return []
            if self._subscriptions and now - self._renewed_at > self._options.visibility_timeout / 4:
                self._renew_subscriptions(now)
            probe = _PROBE.format(marks=_marks(queues))
            if not self._conn.execute(probe, (*queues, now)).fetchone()[0]:
                return []
            # Rotate the starting queue so a busy first queue cannot starve the others.
            start = self._turn % len(queues)
            self._turn += 1
            lease_until = now + self._options.visibility_timeout
            batch: list[Delivery] = []
            with immediate(self._conn) as conn:
                conn.execute(_PROMOTE, (now,))
                for queue in (*queues[start:], *queues[:start]):
                    params = (self._token, lease_until, queue, limit - len(batch))
                    rows = conn.execute(_CLAIM, params).fetchall()
                    rows.sort(key=lambda row: (-row[1], row[0]))  # RETURNING order is arbitrary
                    batch.extend(_delivery(queue, row) for row in rows)
                    if len(batch) >= limit:
                        break
            self._held.update(delivery.tag for delivery in batch)
        return batch

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        ids = [delivery.tag for delivery in deliveries]
        with self._lock:
            for piece in _pieces(ids):
                self._conn.execute(f"DELETE FROM kq_messages WHERE id IN ({_marks(piece)})", piece)
            self._held.difference_update(ids)

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        with self._lock:
            if requeue:
                self._conn.execute(_REQUEUE, (delivery.tag, self._token))
            else:
                headers = _dumps(dead_letter_headers(delivery.envelope.headers, delivery.queue, reason))
                self._conn.execute(
                    _DEAD_LETTER, (dead_letter_queue(delivery.queue), headers, delivery.tag, self._token)
                )
            self._held.discard(delivery.tag)

    # -- inspection -----------------------------------------------------------------------

    def purge(self, queue: str) -> int:
        with self._lock, immediate(self._conn) as conn:
            conn.execute(_PROMOTE, (time.time(),))
            return conn.execute("DELETE FROM kq_messages WHERE queue = ? AND ready = 1", (queue,)).rowcount

    def depth(self, queue: str) -> int:
        with self._lock:
            depth: int = self._conn.execute(_DEPTH, (queue, time.time(), queue)).fetchone()[0]
            return depth

    # -- fan-out --------------------------------------------------------------------------

    def broadcast(self, channel: str, envelope: Envelope) -> None:
        now = time.time()
        with self._lock, immediate(self._conn) as conn:
            _drop_expired_subscribers(conn, channel, now)
            conn.execute(_BROADCAST, (*_fields(envelope, now), channel))

    def subscribe(self, channel: str) -> str:
        """Register a private queue ``<channel>.<uuid>``; it lives while this transport fetches.

        Its registration expires one visibility timeout after this instance last fetched, so a
        subscriber that died without closing stops collecting broadcasts; a live one that was
        merely silent that long is registered again by its next fetch.
        """
        queue = f"{channel}.{uuid.uuid4().hex}"
        now = time.time()
        with self._lock:
            with immediate(self._conn) as conn:
                _drop_expired_subscribers(conn, channel, now)
                conn.execute(
                    "INSERT INTO kq_broadcast_subscribers (queue, channel, expires_at) VALUES (?, ?, ?)",
                    (queue, channel, now + self._options.visibility_timeout),
                )
            self._subscriptions[queue] = channel
        return queue

    def unsubscribe(self, queue: str) -> None:
        with self._lock:
            with immediate(self._conn) as conn:
                _drop_queues(conn, [queue])
            self._subscriptions.pop(queue, None)

    def _renew_subscriptions(self, now: float) -> None:
        """Push our registrations' expiry forward, re-creating any that expired while this
        instance did not fetch for a long time (broadcasts sent meanwhile are lost)."""
        expires_at = now + self._options.visibility_timeout
        with immediate(self._conn) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO kq_broadcast_subscribers (queue, channel, expires_at) "
                "VALUES (?, ?, ?)",
                [(queue, channel, expires_at) for queue, channel in self._subscriptions.items()],
            )
        self._renewed_at = now

    # -- shutdown -------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Close the file without giving leases back: a new instance acks them by id."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                self._held.clear()

    def close(self) -> None:
        """Give back every message this instance still leases and drop its subscriptions."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._held or self._subscriptions:
                    with immediate(self._conn) as conn:
                        for piece in _pieces(sorted(self._held)):
                            conn.execute(
                                "UPDATE kq_messages SET ready = 1, lease = NULL "
                                f"WHERE lease = ? AND id IN ({_marks(piece)})",
                                (self._token, *piece),
                            )
                        _drop_queues(conn, sorted(self._subscriptions))
            finally:
                self._conn.close()
                self._held.clear()
                self._subscriptions.clear()


def _fields(envelope: Envelope, now: float, eta: datetime | None = None) -> tuple[Any, ...]:
    """The column values after ``queue`` for one message, in ``_FIELDS`` order."""
    due = now if eta is None else _timestamp(eta)
    priority = envelope.priority
    rank = 0 if priority is None else min(max(int(priority), 0), 9)
    return (
        rank,
        int(due <= now),
        due,
        envelope.body,
        envelope.content_type,
        envelope.content_encoding,
        _dumps(envelope.headers),
        priority,
        envelope.correlation_id,
        envelope.reply_to,
    )


def _delivery(queue: str, row: tuple[Any, ...]) -> Delivery:
    tag, _rank, deliveries, body, content_type, encoding, headers, priority, corr, reply = row
    envelope = Envelope(body, content_type, encoding, json.loads(headers), priority, corr, reply)
    return Delivery(envelope, queue, tag=tag, redelivered=deliveries > 1)


def _timestamp(eta: datetime) -> float:
    """Seconds since the epoch; a naive ``eta`` is taken as UTC, kq's internal time zone."""
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=timezone.utc)
    return eta.timestamp()


def _dumps(headers: Mapping[str, Any]) -> str:
    # ASCII with \u escapes: a hostile message's lone surrogate cannot be stored as UTF-8, and
    # failing to store it would leave a rejected message leased, to be delivered again forever.
    return json.dumps(dict(headers), separators=(",", ":"))


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _pieces(ids: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """Split ``ids`` so that no statement exceeds SQLite's bound-parameter limit."""
    for start in range(0, len(ids), _MAX_VARIABLES):
        yield ids[start : start + _MAX_VARIABLES]


def _drop_queues(conn: sqlite3.Connection, queues: Sequence[str]) -> None:
    """Forget broadcast queues: their registrations and every message in them."""
    for piece in _pieces(queues):
        marks = _marks(piece)
        conn.execute(f"DELETE FROM kq_broadcast_subscribers WHERE queue IN ({marks})", piece)
        conn.execute(f"DELETE FROM kq_messages WHERE queue IN ({marks})", piece)


def _drop_expired_subscribers(conn: sqlite3.Connection, channel: str, now: float) -> None:
    """Remove subscribers of ``channel`` that stopped renewing (their process died unclosed)."""
    conn.execute(
        f"DELETE FROM kq_messages WHERE queue IN (SELECT queue {_EXPIRED_SUBSCRIBERS})",
        (channel, now),
    )
    conn.execute(f"DELETE {_EXPIRED_SUBSCRIBERS}", (channel, now))
