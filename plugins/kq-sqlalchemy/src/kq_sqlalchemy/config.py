"""Backend URLs and options, validated when a backend is made so that mistakes fail at start-up.

URLs follow Celery's convention: ``db+`` and then a SQLAlchemy URL. The driver is filled in
(``db+postgresql://h/db`` becomes ``postgresql+psycopg://h/db``) because this plugin depends
on, and is tested with, exactly one driver per database; naming it explicitly is accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from kq.config import reject_unknown_options, safe_url
from kq.exceptions import ConfigurationError

from .flavours import PREFIX, Flavour

# Unquoted identifiers only: the name is also the NOTIFY channel, and quoting rules differ
# between PostgreSQL and MySQL. 48 characters leave room for the index name within
# PostgreSQL's 63.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


@dataclass(frozen=True)
class Options:
    """``result_backend_options`` this backend accepts."""

    #: The results table, created on first use; counters go in ``<table_name>_counters``.
    table_name: str = "kq_results"
    #: Connections kept open per process. A worker's threads each hold one only for the few
    #: milliseconds of a store, so a handful serves many threads.
    pool_size: int = 10
    #: Extra connections opened under bursts beyond ``pool_size``, closed when returned.
    max_overflow: int = 10
    #: Seconds to wait for a connection to the server before it counts as unavailable.
    connect_timeout: int = 10


_COUNTS = {"pool_size": 1, "max_overflow": 0, "connect_timeout": 1}  # name -> smallest value


def database_url(url: str, flavour: Flavour) -> sa.URL:
    """The SQLAlchemy URL behind a ``db+`` backend URL, with the flavour's driver filled in."""
    shown = safe_url(url)
    if not url.lower().startswith(PREFIX):
        raise ConfigurationError(
            f"{shown} is not a database result backend URL; expected one of "
            f"{', '.join(s + '://...' for s in flavour.schemes)}"
        )
    try:
        parsed = sa.make_url(url[len(PREFIX) :])
    except (ArgumentError, ValueError):  # their messages say less than this one
        raise ConfigurationError(
            f"{shown} is not a valid database URL; expected e.g. "
            f"{flavour.schemes[0]}://user:password@host:port/database"
        ) from None
    dialect, _, driver = parsed.drivername.lower().partition("+")
    if dialect not in flavour.dialects:
        raise ConfigurationError(
            f"{shown}: this backend serves {', '.join(flavour.dialects)}, not {dialect!r}"
        )
    if driver and driver != flavour.driver:
        raise ConfigurationError(
            f"{shown}: driver {driver!r} is not supported; kq-sqlalchemy uses {flavour.driver} "
            f"(write {PREFIX}{dialect}:// or {PREFIX}{dialect}+{flavour.driver}://)"
        )
    if not parsed.database:
        raise ConfigurationError(f"{shown} names no database; add it as the path: .../database")
    return parsed.set(drivername=f"{dialect}+{flavour.driver}")


def parse_options(options: Mapping[str, Any]) -> Options:
    """Validate ``options``; numbers may be strings, as they come from the environment.

    Unknown names are an error, so a misspelt option cannot silently leave a default in place.
    """
    reject_unknown_options("kq-sqlalchemy option(s)", options, Options.__dataclass_fields__)
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name == "table_name":
            if not isinstance(value, str) or not _TABLE_NAME.fullmatch(value):
                raise ConfigurationError(
                    f"result_backend_options table_name must be a plain SQL identifier (letters, "
                    f"digits, _; at most 48 characters, not starting with a digit), got {value!r}"
                )
            values[name] = value
        else:
            values[name] = _count(name, value, _COUNTS[name])
    return Options(**values)


def _count(name: str, value: Any, least: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = least - 1
    if isinstance(value, (bool, float)) or number < least:
        raise ConfigurationError(
            f"result_backend_options {name} must be a whole number >= {least}, got {value!r}"
        )
    return number
