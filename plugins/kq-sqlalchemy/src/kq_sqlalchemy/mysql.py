"""The MySQL/MariaDB backend (``db+mysql://``, ``db+mariadb://``), through PyMySQL.

MySQL has no notifications, so :meth:`wait` is the base class's poll with a growing interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from kq.backend import BackendCapabilities

from .backend import SQLBackend
from .flavours import MYSQL


class MySQLBackend(SQLBackend):
    """Results and counters in InnoDB tables, written with ``INSERT ... ON DUPLICATE KEY UPDATE``."""

    flavour = MYSQL
    capabilities: ClassVar[BackendCapabilities] = MYSQL.capabilities
    # InnoDB's default, REPEATABLE READ, takes gap locks on every locking read; READ COMMITTED
    # keeps concurrent upserts of neighbouring ids out of each other's way.
    engine_options: ClassVar[Mapping[str, Any]] = {"isolation_level": "READ COMMITTED"}

    @staticmethod
    def upsert(table: sa.Table) -> sa.Executable:
        # PyMySQL sends an executemany of this statement as one multi-row INSERT.
        insert = mysql.insert(table)
        return insert.on_duplicate_key_update(SQLBackend.replacements(insert.inserted))

    @staticmethod
    def counter_upsert(table: sa.Table) -> sa.Executable:
        insert = mysql.insert(table)
        return insert.on_duplicate_key_update(SQLBackend.counter_replacements(table, insert.inserted))
