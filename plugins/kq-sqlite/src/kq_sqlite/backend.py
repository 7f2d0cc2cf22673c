"""The SQLite result backend: one row per task id, in the same file as the broker if you like.

Results are opaque payloads (the kernel encodes them), so the table is a key-value store with
an optional expiry. Expired rows read as missing at once and are deleted by :meth:`cleanup`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from kq.backend import BackendCapabilities, ResultBackend, StoredResult
from kq.exceptions import BackendUnavailable

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
"""

_STORE = "INSERT OR REPLACE INTO kq_results (task_id, state, payload, expires_at) VALUES (?, ?, ?, ?)"
_GET = (
    "SELECT state, payload FROM kq_results "
    "WHERE task_id = ? AND (expires_at IS NULL OR expires_at > ?)"
)


@unavailable_on_error(BackendUnavailable, ("__init__", "store_many", "get", "forget", "cleanup"))
class SQLiteBackend(ResultBackend):
    """Results in one SQLite file, readable by every process on this machine.

    One connection guarded by a lock serves all threads: SQLite serialises writers anyway and a
    read by primary key takes microseconds, so per-thread connections would buy little and
    leave connections behind in threads that end. Options: ``synchronous``, ``busy_timeout``.
    """

    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities(
        push=False, native_expiry=False, shared=True
    )

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

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM kq_results WHERE task_id = ?", (task_id,))

    def cleanup(self) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "DELETE FROM kq_results WHERE expires_at <= ?", (time.time(),)
            )
        return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()
