"""Beat's schedule store in SQLite: the leader lock and the last runs, by default in the same
file as the broker and the results (``sqlite:///kq.sqlite3``).

Each app's namespace is a column, so several apps can share the file. The lock is a row with
its holder and its expiry in ``time.time()`` seconds: every process sharing the file runs on
this machine (SQLite needs a local filesystem), so they all read the same clock. Each write is
one ``BEGIN IMMEDIATE`` transaction, so checking the lock and writing the slot cannot be split
by another process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kq.beat import ScheduleStore

from .db import connect, database_path, immediate, parse_options, unavailable_on_error

OPTIONS = ("synchronous", "busy_timeout")

SCHEMA = """
CREATE TABLE IF NOT EXISTS kq_beat_locks (
    namespace TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kq_beat_runs (
    namespace TEXT NOT NULL,
    entry TEXT NOT NULL,
    slot TEXT NOT NULL,
    PRIMARY KEY (namespace, entry)
);
"""

# Taken when free or expired, extended when already ours; RETURNING gives no row when another
# holder's lease is running (the DO UPDATE's WHERE left the row alone).
_ACQUIRE = """
INSERT INTO kq_beat_locks (namespace, holder, expires_at) VALUES (:namespace, :holder, :expires_at)
ON CONFLICT (namespace) DO UPDATE SET holder = :holder, expires_at = :expires_at
    WHERE holder = :holder OR expires_at <= :now
RETURNING holder
"""
_HOLDS = "SELECT 1 FROM kq_beat_locks WHERE namespace = ? AND holder = ? AND expires_at > ?"


@unavailable_on_error(
    ConnectionError,
    (
        "__init__",
        "acquire",
        "release",
        "leader",
        "last_runs",
        "advance",
    ),
)
class SQLiteScheduleStore(ScheduleStore):
    """Options (``beat_store_options``): ``synchronous``, ``busy_timeout``, as for the backend.

    One connection guarded by a lock, like :class:`kq_sqlite.backend.SQLiteBackend`.
    """

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        options = dict(options)
        self.namespace: str = options.pop("namespace")
        self.url = url
        self.path = database_path(url)
        self._conn = connect(self.path, parse_options(options, OPTIONS), SCHEMA)
        self._lock = threading.Lock()

    def acquire(self, holder: str, lease: float) -> bool:
        now = time.time()
        params = {"namespace": self.namespace, "holder": holder, "now": now, "expires_at": now + lease}
        with self._lock, immediate(self._conn) as conn:
            return conn.execute(_ACQUIRE, params).fetchone() is not None

    def release(self, holder: str) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM kq_beat_locks WHERE namespace = ? AND holder = ?", (self.namespace, holder)
            )

    def leader(self) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT holder FROM kq_beat_locks WHERE namespace = ? AND expires_at > ?",
                (self.namespace, time.time()),
            ).fetchone()
        return None if row is None else row[0]

    def last_runs(self) -> Mapping[str, datetime]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT entry, slot FROM kq_beat_runs WHERE namespace = ?", (self.namespace,)
            ).fetchall()
        return {entry: datetime.fromisoformat(slot) for entry, slot in rows}

    def advance(self, holder: str, entry: str, expected: datetime | None, slot: datetime) -> bool:
        """The lock check and the compare-and-set in one ``BEGIN IMMEDIATE`` transaction."""
        key = (self.namespace, entry)
        with self._lock, immediate(self._conn) as conn:
            if conn.execute(_HOLDS, (self.namespace, holder, time.time())).fetchone() is None:
                return False
            if expected is None:
                written = conn.execute(
                    "INSERT INTO kq_beat_runs (namespace, entry, slot) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (*key, slot.isoformat()),
                )
            else:
                written = conn.execute(
                    "UPDATE kq_beat_runs SET slot = ? WHERE namespace = ? AND entry = ? AND slot = ?",
                    (slot.isoformat(), *key, expected.isoformat()),
                )
            return written.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()
