"""The PostgreSQL backend (``db+postgresql://``), through psycopg 3, with a push-driven wait.

Every store of a ready result sends ``NOTIFY <table>, '<task_id>'`` in the storing transaction,
so the notification goes out exactly when the result becomes visible (at commit) and never for
a write that rolled back. :meth:`PostgreSQLBackend.wait` sleeps until such a notification (see
:mod:`kq_sqlalchemy.notify`) instead of polling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from kq.backend import BackendCapabilities, StoredResult
from kq.config import safe_url
from kq.states import READY_STATES

from .backend import SQLBackend, unavailable
from .flavours import POSTGRESQL
from .notify import Listener

#: TCP keepalives on the LISTEN connection, which may sit idle for hours: a peer that vanished
#: without closing (a crashed host, a NAT or load balancer that dropped the flow) is noticed
#: within about a minute, and the traffic keeps such middle boxes from dropping it at all.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

# One round trip however many results were stored.
_NOTIFY = sa.text("SELECT pg_notify(:channel, task_id) FROM unnest(CAST(:task_ids AS text[])) AS task_id")


class PostgreSQLBackend(SQLBackend):
    """Results and counters in PostgreSQL tables, written with ``INSERT ... ON CONFLICT DO
    UPDATE``; waits are woken by LISTEN/NOTIFY on a channel named like the results table."""

    flavour = POSTGRESQL
    capabilities: ClassVar[BackendCapabilities] = POSTGRESQL.capabilities

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self._listener: Listener | None = None
        self._listener_lock = threading.Lock()

    @staticmethod
    def upsert(table: sa.Table) -> sa.Executable:
        insert = postgresql.insert(table)
        return insert.on_conflict_do_update(
            index_elements=[table.c.task_id], set_=SQLBackend.replacements(insert.excluded)
        )

    @staticmethod
    def counter_upsert(table: sa.Table) -> sa.Executable:
        insert = postgresql.insert(table)
        return insert.on_conflict_do_update(
            index_elements=[table.c.name],
            set_=dict(SQLBackend.counter_replacements(table, insert.excluded)),
        )

    def _stored(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        # Only ready results end a wait(); STARTED or RETRY would wake waiters for nothing.
        ready = [row["task_id"] for row in rows if row["state"] in READY_STATES]
        if ready:
            conn.execute(_NOTIFY, {"channel": self.table.name, "task_ids": ready})

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        """Read, and read again only when a notification for ``task_id`` arrives (or the LISTEN
        connection was re-established), until the result is ready or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._listening().watch(task_id) as notified:
                while True:
                    notified.clear()  # before the read: a store after it sets it again
                    found = self.get(task_id)
                    if found is not None and found.state in READY_STATES:
                        return found
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return found
                    notified.wait(remaining)
        except psycopg.OperationalError as exc:
            raise unavailable(self.url, exc) from exc

    def close(self) -> None:
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        super().close()

    def _listening(self) -> Listener:
        with self._listener_lock:
            if self._listener is None:
                self._listener = Listener(self._listen_connection, self.table.name, safe_url(self.url))
            return self._listener

    def _listen_connection(self) -> psycopg.Connection:
        """A connection of its own, outside the pool: it LISTENs for as long as the backend lives.
        It is opened with the same arguments SQLAlchemy would use."""
        engine = self._engine_once()
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        params = {**KEEPALIVES, **cparams, "connect_timeout": self.config.connect_timeout}
        return psycopg.connect(*cargs, **params, autocommit=True)
