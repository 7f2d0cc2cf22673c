"""The SQLite result backend: one row per task id, in the same file as the broker if you like.

Results are opaque payloads (the kernel encodes them), so the table is a key-value store with
an optional expiry. Expired rows read as missing at once and are deleted by :meth:`cleanup`.
Counters (:meth:`SQLiteBackend.incr`) and claims (:meth:`SQLiteBackend.claim`) live in tables of
their own, with the same kind of expiry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from kq.backend import BackendCapabilities, ResultBackend, StoredResult
from kq.exceptions import BackendUnavailable

from . import BACKEND_CAPABILITIES
from .db import connect, database_path, immediate, parse_options, unavailable_on_error

OPTIONS = ("synchronous", "busy_timeout")

SCHEMA = """
CREATE TABLE IF NOT EXISTS kq_results (
    task_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    payload BLOB NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS kq_results_expiry
    ON kq_results (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS kq_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS kq_claims (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""

_STORE = "INSERT OR REPLACE INTO kq_results (task_id, state, payload, expires_at) VALUES (?, ?, ?, ?)"
_GET = "SELECT state, payload FROM kq_results WHERE task_id = ? AND (expires_at IS NULL OR expires_at > ?)"
#: Task ids per SELECT in :meth:`SQLiteBackend.get_many`, well within the parameters SQLite
#: allows in one statement (32,766; 999 in builds that lower it to the old default).
GET_MANY_CHUNK = 500
# An expired counter is replaced as if it were not there; in DO UPDATE, bare names are the
# stored row's.
_INCR = """
INSERT INTO kq_counters (name, value, expires_at) VALUES (:name, :amount, :expires_at)
ON CONFLICT (name) DO UPDATE SET
    value = CASE WHEN expires_at <= :now THEN :amount ELSE value + :amount END,
    expires_at = :expires_at
RETURNING value
"""
# An expired claim is taken over; a live one is rewritten as it is, so RETURNING names its holder.
_CLAIM = """
INSERT INTO kq_claims (name, holder, expires_at) VALUES (:name, :holder, :expires_at)
ON CONFLICT (name) DO UPDATE SET
    holder = CASE WHEN expires_at <= :now THEN :holder ELSE holder END,
    expires_at = CASE WHEN expires_at <= :now THEN :expires_at ELSE expires_at END
RETURNING holder, expires_at = :expires_at
"""


@unavailable_on_error(
    BackendUnavailable,
    (
        "__init__",
        "store_many",
        "get",
        "get_many",
        "forget",
        "incr",
        "delete_counter",
        "claim",
        "release",
        "cleanup",
    ),
)
class SQLiteBackend(ResultBackend):
    """Results in one SQLite file, readable by every process on this machine.

    One connection guarded by a lock serves all threads: SQLite serialises writers anyway and a
    read by primary key takes microseconds, so per-thread connections would buy little and
    leave connections behind in threads that end. Options: ``synchronous``, ``busy_timeout``.
    """

    capabilities: ClassVar[BackendCapabilities] = BACKEND_CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.path = database_path(url)
        self._conn = connect(self.path, parse_options(self.options, OPTIONS), SCHEMA)
        self._lock = threading.Lock()

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        expires_at = None if ttl is None else time.time() + ttl
        rows = [(r.task_id, r.state, r.payload, expires_at) for r in results]
        if rows:
            with self._lock, immediate(self._conn) as conn:
                conn.executemany(_STORE, rows)

    def get(self, task_id: str) -> StoredResult | None:
        with self._lock:
            row = self._conn.execute(_GET, (task_id, time.time())).fetchone()
        return None if row is None else StoredResult(task_id, row[0], bytes(row[1]))

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        now = time.time()
        found: dict[str, StoredResult] = {}
        with self._lock:
            for start in range(0, len(task_ids), GET_MANY_CHUNK):
                chunk = list(task_ids[start : start + GET_MANY_CHUNK])
                rows = self._conn.execute(
                    f"SELECT task_id, state, payload FROM kq_results WHERE task_id IN "
                    f"({', '.join('?' * len(chunk))}) AND (expires_at IS NULL OR expires_at > ?)",
                    (*chunk, now),
                )
                found.update((row[0], StoredResult(row[0], row[1], bytes(row[2]))) for row in rows)
        return [found.get(task_id) for task_id in task_ids]

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM kq_results WHERE task_id = ?", (task_id,))

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        """One upsert ... RETURNING, in ``BEGIN IMMEDIATE`` so that it waits for the write lock
        (busy timeout) rather than fail when another process wrote since it started reading."""
        now = time.time()
        params = {
            "name": key,
            "amount": amount,
            "now": now,
            "expires_at": None if expires is None else now + expires,
        }
        with self._lock, immediate(self._conn) as conn:
            (value,) = conn.execute(_INCR, params).fetchone()
        return int(value)

    def delete_counter(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM kq_counters WHERE name = ?", (key,))

    def claim(self, key: str, value: str, expires: float) -> str | None:
        """One upsert ... RETURNING in ``BEGIN IMMEDIATE``, like :meth:`incr`."""
        now = time.time()
        params = {"name": key, "holder": value, "now": now, "expires_at": now + expires}
        with self._lock, immediate(self._conn) as conn:
            holder, taken = conn.execute(_CLAIM, params).fetchone()
        return None if taken and holder == value else holder

    def release(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM kq_claims WHERE name = ? AND holder = ?", (key, value))

    def cleanup(self) -> int:
        now = time.time()
        with self._lock, immediate(self._conn) as conn:
            results = conn.execute("DELETE FROM kq_results WHERE expires_at <= ?", (now,)).rowcount
            counters = conn.execute("DELETE FROM kq_counters WHERE expires_at <= ?", (now,)).rowcount
            claims = conn.execute("DELETE FROM kq_claims WHERE expires_at <= ?", (now,)).rowcount
        return results + counters + claims

    def close(self) -> None:
        with self._lock:
            self._conn.close()
