"""kq-sqlalchemy: result backends on PostgreSQL (``db+postgresql://``) and MySQL/MariaDB
(``db+mysql://``), through SQLAlchemy.

Only the hook implementation lives here. It imports nothing heavy: each factory imports its
backend (SQLAlchemy and the driver) when the first backend is made; see :mod:`.flavours`.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendSpec

from .flavours import MYSQL, POSTGRESQL

__version__ = "0.1.0"


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=POSTGRESQL.schemes,
            factory=POSTGRESQL,
            description="PostgreSQL via SQLAlchemy and psycopg 3; wait() woken by LISTEN/NOTIFY",
        ),
        BackendSpec(
            schemes=MYSQL.schemes,
            factory=MYSQL,
            description="MySQL/MariaDB via SQLAlchemy and PyMySQL; wait() polls",
        ),
    ]
