"""The results, counters and claims tables, and creating them safely when many workers start at the same
moment."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import LONGBLOB, VARBINARY
from sqlalchemy.exc import DBAPIError

#: Results are opaque payloads, possibly megabytes: MySQL's plain BLOB stops at 64 KB.
PAYLOAD = sa.LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb")
#: A counter's name as UTF-8 bytes, compared byte for byte: MySQL's default collations would
#: make ``Chord`` and ``chord`` (or ``a`` and ``a ``) one counter. 255 bytes at most on MySQL.
COUNTER_NAME = sa.LargeBinary().with_variant(VARBINARY(255), "mysql", "mariadb")


def results_table(name: str) -> sa.Table:
    """One row per task id. ``expires_at`` is in epoch seconds (``NULL``: kept until forgotten),
    a plain number every dialect compares the same way, indexed for :meth:`cleanup`."""
    return sa.Table(
        name,
        sa.MetaData(),
        # 155: Celery's width; a uuid4 needs 36.
        sa.Column("task_id", sa.String(155), primary_key=True),
        sa.Column("state", sa.String(50), nullable=False),
        sa.Column("payload", PAYLOAD, nullable=False),
        sa.Column("expires_at", sa.Double(), index=True),
        # For people reading the table; the payload carries the date kq reads.
        sa.Column(
            "date_done",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
        mysql_engine="InnoDB",
    )


def counters_table(results: str) -> sa.Table:
    """The counters beside the results table ``results``: a name, a value, and ``expires_at`` as
    in the results table. The index is named explicitly to stay within identifier limits."""
    name = f"{results}_counters"
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("name", COUNTER_NAME, primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double()),
        sa.Index(f"{name}_exp", "expires_at"),
        mysql_engine="InnoDB",
    )


def claims_table(results: str) -> sa.Table:
    """The claims beside the results table ``results`` (unique tasks): a name, the value that
    holds it (a task id, as wide as the results table's), and when the claim lapses."""
    name = f"{results}_claims"
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("name", COUNTER_NAME, primary_key=True),
        sa.Column("holder", sa.String(155), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Index(f"{name}_exp", "expires_at"),
        mysql_engine="InnoDB",
    )


def create_table(engine: sa.Engine, table: sa.Table) -> None:
    """Create ``table`` and its index unless the table exists.

    When several processes start together, each may see no table and try to create it; all but
    one then fail (PostgreSQL even with IF NOT EXISTS, on its catalog's unique index). Losing
    that race is fine: the error is ignored when the table is there afterwards. On PostgreSQL
    table and index are created in one transaction, so nobody sees a table without its index.
    """
    try:
        with engine.begin() as conn:
            table.create(conn, checkfirst=True)
    except DBAPIError:
        if not sa.inspect(engine).has_table(table.name):
            raise
