"""The two backends this plugin serves, described without importing SQLAlchemy or a driver.

kq imports every installed plugin when any kq process starts (a worker, the CLI, a client), and
SQLAlchemy with psycopg costs about 0.4 s to import. So the hook implementations only need this
module: each :class:`Flavour` names its URL schemes and capabilities, and is itself the factory
that imports the backend class on first use. The backend classes take their capabilities from
here, so each is declared exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kq.backend import BackendCapabilities, ResultBackend
from kq.specs import lazy

#: Celery's convention: a result backend URL is ``db+`` followed by a SQLAlchemy URL.
PREFIX = "db+"


@dataclass(frozen=True)
class Flavour:
    """One database family: its SQLAlchemy dialects, the driver kq uses, and what it can do."""

    #: SQLAlchemy dialect names accepted after ``db+`` (``mysql`` and ``mariadb`` are one family).
    dialects: tuple[str, ...]
    #: The DBAPI driver this plugin depends on and tests; the only one accepted in a URL.
    driver: str
    capabilities: BackendCapabilities
    #: ``module:Class`` of the backend, imported when the first backend is made.
    backend: str

    @property
    def schemes(self) -> tuple[str, ...]:
        """``db+postgresql`` and, for users who spell the driver out, ``db+postgresql+psycopg``."""
        return tuple(f"{PREFIX}{d}{driver}" for d in self.dialects for driver in ("", f"+{self.driver}"))

    def __call__(self, url: str, options: Mapping[str, Any] | None = None) -> ResultBackend:
        backend: ResultBackend = lazy(self.backend)(url, options)
        return backend


POSTGRESQL = Flavour(
    dialects=("postgresql",),
    driver="psycopg",
    # wait() is woken by LISTEN/NOTIFY.
    capabilities=BackendCapabilities(push=True, native_expiry=False, shared=True, counters=True, claims=True),
    backend="kq_sqlalchemy.postgresql:PostgreSQLBackend",
)

MYSQL = Flavour(
    dialects=("mysql", "mariadb"),
    driver="pymysql",
    # MySQL has no notifications: wait() polls with the base class's growing interval.
    capabilities=BackendCapabilities(
        push=False, native_expiry=False, shared=True, counters=True, claims=True
    ),
    backend="kq_sqlalchemy.mysql:MySQLBackend",
)
