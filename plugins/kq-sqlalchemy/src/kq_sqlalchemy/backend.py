"""What the PostgreSQL and MySQL backends share: the engine, the tables, reads, deletes, errors.

A subclass names its :class:`~kq_sqlalchemy.flavours.Flavour` and writes the statements that
differ between databases, the upserts; PostgreSQL also sends notifications in
:meth:`SQLBackend._stored` and overrides :meth:`~kq.backend.ResultBackend.wait`.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from kq.backend import ResultBackend, StoredResult
from kq.config import safe_url
from kq.exceptions import BackendUnavailable
from kq.redact import scrub

from .config import database_url, parse_options
from .flavours import Flavour
from .schema import claims_table, counters_table, create_table, results_table

#: Task ids per SELECT in :meth:`SQLBackend.get_many`.
GET_MANY_CHUNK = 1000


def reason(exc: BaseException) -> str:
    """The driver's own message on one line (libpq's run over several); for a SQLAlchemy error,
    that of the driver error inside it, never SQLAlchemy's text, which quotes the statement."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def unavailable(url: str, exc: BaseException) -> BackendUnavailable:
    """The error the kernel retries on; it names the URL with the password masked."""
    return BackendUnavailable(f"result backend {safe_url(url)} is unavailable: {scrub(reason(exc), url)}")


def is_unavailable(exc: DBAPIError) -> bool:
    """A lost or refused connection (also a server shutting down, a timeout, a deadlock victim):
    worth retrying later, unlike an error in the statement itself."""
    return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))


class SQLBackend(ResultBackend):
    """Results in one table, one row per task id, shared by every process using the database;
    counters in a second one, ``<table_name>_counters``, claims in ``<table_name>_claims``.

    The engine is created on first use, and each table on its own first use. Its pool pings a
    connection before lending it out, so after a server restart the dead connections are replaced
    and the backend works again by itself; while the server is down every call raises
    :class:`~kq.exceptions.BackendUnavailable`. Options: see :class:`~kq_sqlalchemy.config.Options`.

    Not fork-safe: make backends after forking, never share one across ``fork()``.
    """

    flavour: ClassVar[Flavour]
    #: ``create_engine`` arguments particular to one database.
    engine_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.database_url = database_url(url, self.flavour)
        self.config = parse_options(self.options)
        self.table = results_table(self.config.table_name)
        self._upsert = self.upsert(self.table)
        columns = self.table.c
        self._get = sa.select(columns.state, columns.payload).where(
            columns.task_id == sa.bindparam("task_id"),
            sa.or_(columns.expires_at.is_(None), columns.expires_at > sa.bindparam("now")),
        )
        self._forget = sa.delete(self.table).where(columns.task_id == sa.bindparam("task_id"))
        self._cleanup = sa.delete(self.table).where(columns.expires_at <= sa.bindparam("now"))
        self._get_many = sa.select(columns.task_id, columns.state, columns.payload).where(
            columns.task_id.in_(sa.bindparam("task_ids", expanding=True)),
            sa.or_(columns.expires_at.is_(None), columns.expires_at > sa.bindparam("now")),
        )
        self.counters = counters_table(self.table.name)
        counter = self.counters.c
        self._incr = self.counter_upsert(self.counters)
        self._counter_value = sa.select(counter.value).where(counter.name == sa.bindparam("name"))
        self._delete_counter = sa.delete(self.counters).where(counter.name == sa.bindparam("name"))
        self._cleanup_counters = sa.delete(self.counters).where(counter.expires_at <= sa.bindparam("now"))
        self.claims = claims_table(self.table.name)
        claim = self.claims.c
        self._claim_row = (
            sa.select(claim.holder, claim.expires_at)
            .where(claim.name == sa.bindparam("name"))
            .with_for_update()
        )
        self._take_claim = (
            sa.update(self.claims)
            .where(claim.name == sa.bindparam("b_name"))
            .values(holder=sa.bindparam("holder"), expires_at=sa.bindparam("expires_at"))
        )
        self._new_claim = sa.insert(self.claims)
        self._release = sa.delete(self.claims).where(
            claim.name == sa.bindparam("name"), claim.holder == sa.bindparam("holder")
        )
        self._cleanup_claims = sa.delete(self.claims).where(claim.expires_at <= sa.bindparam("now"))
        self._lock = threading.Lock()
        self._engine: sa.Engine | None = None
        self._tables_ready: set[str] = set()

    @staticmethod
    @abc.abstractmethod
    def upsert(table: sa.Table) -> sa.Executable:
        """An INSERT of one row (all columns but ``date_done`` as parameters) that replaces the
        stored row with the same ``task_id`` instead of failing."""

    @staticmethod
    def replacements(new: Any) -> dict[str, Any]:
        """The SET part of :meth:`upsert`: the columns a later store replaces, where ``new`` is the
        dialect's name for the row being inserted (``excluded`` / ``inserted``)."""
        return {
            "state": new.state,
            "payload": new.payload,
            "expires_at": new.expires_at,
            "date_done": sa.func.current_timestamp(),
        }

    @staticmethod
    @abc.abstractmethod
    def counter_upsert(table: sa.Table) -> sa.Executable:
        """An INSERT of one counter row (``name``, ``value``, ``expires_at``, plus the parameter
        ``now``) that, when the name exists, adds to the stored value instead (see
        :meth:`counter_replacements`)."""

    @staticmethod
    def counter_replacements(table: sa.Table, new: Any) -> list[tuple[str, Any]]:
        """The SET part of :meth:`counter_upsert`, in order: MySQL assigns left to right, so the
        value must be computed from the stored ``expires_at`` before that is replaced. An expired
        counter starts again from the new amount."""
        stored = table.c
        expired = stored.expires_at <= sa.bindparam("now")
        return [
            ("value", sa.case((expired, new.value), else_=stored.value + new.value)),
            ("expires_at", new.expires_at),
        ]

    # -- ResultBackend --------------------------------------------------------------------

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        """One transaction, one batched statement. Rows go in task id order, the same in every
        process, so two batches sharing ids lock them in the same order and cannot deadlock;
        an id given twice is written once, the later one winning, as it would have anyway."""
        expires_at = None if ttl is None else time.time() + ttl
        latest = {r.task_id: r for r in results}
        rows = [
            {"task_id": r.task_id, "state": r.state, "payload": r.payload, "expires_at": expires_at}
            for _, r in sorted(latest.items())
        ]
        if rows:
            with self._transaction() as conn:
                conn.execute(self._upsert, rows)
                self._stored(conn, rows)

    def _stored(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Called inside the storing transaction, after the upsert."""

    def get(self, task_id: str) -> StoredResult | None:
        with self._transaction() as conn:
            row = conn.execute(self._get, {"task_id": task_id, "now": time.time()}).first()
        return None if row is None else StoredResult(task_id, row.state, bytes(row.payload))

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """One SELECT ... IN per chunk of ids, all in one transaction."""
        found: dict[str, StoredResult] = {}
        if task_ids:
            now = time.time()
            with self._transaction() as conn:
                for start in range(0, len(task_ids), GET_MANY_CHUNK):
                    chunk = list(task_ids[start : start + GET_MANY_CHUNK])
                    rows = conn.execute(self._get_many, {"task_ids": chunk, "now": now})
                    found.update(
                        (r.task_id, StoredResult(r.task_id, r.state, bytes(r.payload))) for r in rows
                    )
        return [found.get(task_id) for task_id in task_ids]

    def forget(self, task_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(self._forget, {"task_id": task_id})

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        """The upsert, then a read of the value, in one transaction: the upsert's row lock, held
        until commit, keeps every other writer out in between (MySQL has no RETURNING)."""
        now = time.time()
        name = key.encode()
        row = {
            "name": name,
            "value": amount,
            "now": now,
            "expires_at": None if expires is None else now + expires,
        }
        with self._transaction(self.counters) as conn:
            conn.execute(self._incr, row)
            return int(conn.execute(self._counter_value, {"name": name}).scalar_one())

    def delete_counter(self, key: str) -> None:
        with self._transaction(self.counters) as conn:
            conn.execute(self._delete_counter, {"name": key.encode()})

    def claim(self, key: str, value: str, expires: float) -> str | None:
        """Read the claim's row locked (``FOR UPDATE``) and take it when it is missing or lapsed,
        in one transaction. Two claims of a missing row may both insert: the loser's insert fails
        on the primary key once the winner commits, and its second attempt reads the winner."""
        try:
            return self._claim_once(key, value, expires)
        except IntegrityError:
            return self._claim_once(key, value, expires)

    def _claim_once(self, key: str, value: str, expires: float) -> str | None:
        now = time.time()
        row = {"name": key.encode(), "holder": value, "expires_at": now + expires}
        with self._transaction(self.claims) as conn:
            found = conn.execute(self._claim_row, {"name": row["name"]}).first()
            if found is None:
                conn.execute(self._new_claim, row)
            elif found.expires_at <= now:
                conn.execute(self._take_claim, {**row, "b_name": row["name"]})
            else:
                return str(found.holder)
        return None

    def release(self, key: str, value: str) -> None:
        with self._transaction(self.claims) as conn:
            conn.execute(self._release, {"name": key.encode(), "holder": value})

    def cleanup(self) -> int:
        now = {"now": time.time()}
        with self._transaction(self.table, self.counters, self.claims) as conn:
            return (
                conn.execute(self._cleanup, now).rowcount
                + conn.execute(self._cleanup_counters, now).rowcount
                + conn.execute(self._cleanup_claims, now).rowcount
            )

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._tables_ready.clear()

    # -- connections ----------------------------------------------------------------------

    def _engine_once(self) -> sa.Engine:
        """The engine, created on first use (creating it does not connect)."""
        with self._lock:
            if self._engine is None:
                self._engine = sa.create_engine(
                    self.database_url,
                    pool_size=self.config.pool_size,
                    max_overflow=self.config.max_overflow,
                    pool_pre_ping=True,
                    # Parameters are result payloads: never put them in logs or error messages.
                    hide_parameters=True,
                    connect_args={"connect_timeout": self.config.connect_timeout},
                    **self.engine_options,
                )
            return self._engine

    def _ready_engine(self, tables: Sequence[sa.Table]) -> sa.Engine:
        """The engine, with ``tables`` created on first use (the counters table only once counters
        are used). A failed creation (server down) is tried again by the next call."""
        engine = self._engine
        if engine is not None and all(t.name in self._tables_ready for t in tables):
            return engine
        engine = self._engine_once()
        with self._lock:
            for table in tables:
                if table.name not in self._tables_ready:
                    create_table(engine, table)
                    self._tables_ready.add(table.name)
        return engine

    @contextmanager
    def _transaction(self, *tables: sa.Table) -> Iterator[sa.Connection]:
        """A connection in a transaction on ``tables`` (default: the results table), committed at
        the end; connection failures, including those while creating a table, come out as
        :class:`BackendUnavailable`."""
        try:
            with self._ready_engine(tables or (self.table,)).begin() as conn:
                yield conn
        except DBAPIError as exc:
            if not is_unavailable(exc):
                raise
            raise unavailable(self.url, exc) from exc
