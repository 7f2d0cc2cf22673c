"""What the broker and the result backend share: URL parsing, options, and opening the file.

Both may live in one database file (``sqlite:///kq.sqlite3`` is kq's default for each), so
every connection is opened the same way: WAL journal, so readers never block the one writer and
several processes can share the file; a busy timeout, so a writer waits for the write lock
instead of failing; and autocommit mode, so transactions are exactly the ``BEGIN IMMEDIATE``
blocks written in this package and never an implicit one the sqlite3 module opened for us.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from kq.config import reject_unknown_options
from kq.exceptions import ConfigurationError

T = TypeVar("T")

SCHEME = "sqlite"
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass(frozen=True)
class Options:
    """Validated options; each consumer reads only the ones it accepts (see :func:`parse_options`)."""

    #: ``PRAGMA synchronous``. NORMAL under WAL survives a process crash, not an OS crash.
    synchronous: str = "NORMAL"
    #: Seconds a writer waits for another process's write lock before giving up.
    busy_timeout: float = 30.0
    #: Seconds a fetched, unacked message stays leased to its consumer before it comes back.
    visibility_timeout: float = 3600.0
    #: Longest sleep, in seconds, between two polls of an empty queue.
    polling_interval: float = 0.05


def database_path(url: str) -> str:
    """Return the absolute file path named by a ``sqlite://`` URL.

    SQLAlchemy's convention: ``sqlite:///relative/path.db`` (three slashes, relative to the
    current directory) and ``sqlite:////absolute/path.db`` (four). The path is made absolute now,
    so a later ``chdir`` cannot split one app across two files. The directory must exist: the
    file is created on first use, but a missing directory is almost always a typo.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SCHEME:
        raise ConfigurationError(f"{url!r} is not a sqlite URL (expected sqlite:///path/to/file.db)")
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"{url!r}: a sqlite URL names a local file and takes no host; use sqlite:///relative.db "
            f"or sqlite:////absolute/path.db"
        )
    if "?" in rest:
        raise ConfigurationError(
            f"{url!r}: query parameters are not supported; pass options in "
            f"broker_transport_options / result_backend_options"
        )
    path = rest[1:]
    if not path or path == ":memory:":
        raise ConfigurationError(
            f"{url!r} names no file; an in-memory database cannot be shared by workers, use "
            f"sqlite:///kq.sqlite3"
        )
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ConfigurationError(
            f"{url!r}: directory {parent} does not exist (for database {path}); create it first"
        )
    return path


def parse_options(options: Mapping[str, Any], accepted: Collection[str]) -> Options:
    """Validate ``options`` (numbers may be given as strings, as they come from the environment).

    Unknown names are an error rather than ignored, so a misspelt option cannot silently leave
    a default in place.
    """
    reject_unknown_options("sqlite option(s)", options, accepted)
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name == "synchronous":
            level = str(value).upper()
            if level not in SYNCHRONOUS_LEVELS:
                raise ConfigurationError(
                    f"sqlite option synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, got {value!r}"
                )
            values[name] = level
        else:
            values[name] = _positive_number(name, value)
    return Options(**values)


def _positive_number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if isinstance(value, bool) or not number > 0:
        raise ConfigurationError(f"sqlite option {name} must be a number > 0, got {value!r}")
    return number


def connect(path: str, options: Options, schema: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode and create ``schema`` (idempotent DDL) if it is not there yet.

    ``check_same_thread=False`` because the kernel may close a transport from another thread;
    callers still never use one connection from two threads at once.
    """
    try:
        conn = sqlite3.connect(
            path, timeout=options.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            _set_up(conn, path, options, schema)
        except BaseException:
            conn.close()
            raise
    except sqlite3.OperationalError:
        raise  # locked, disk full, I/O: passing troubles, mapped by @unavailable_on_error
    except sqlite3.DatabaseError as exc:  # not a database at all (a corrupt or foreign file)
        raise ConfigurationError(f"cannot open SQLite database {path}: {exc}") from exc
    return conn


def unavailable_on_error(error: type[Exception], methods: Iterable[str]) -> Callable[[T], T]:
    """Class decorator: in ``methods``, sqlite3's operational errors (still locked after
    ``busy_timeout``, disk full, I/O errors) become the kernel's ``error``
    (``BrokerUnavailable`` or ``BackendUnavailable``), so the worker backs off and retries
    instead of stopping, and nothing it holds is lost."""

    def decorate(cls: T) -> T:
        for name in methods:
            setattr(cls, name, _translating(getattr(cls, name), error))
        return cls

    return decorate


def _translating(method: Callable[..., Any], error: type[Exception]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise error(_describe(database_path(self.url), exc)) from exc

    return call


def _describe(path: str, exc: sqlite3.OperationalError) -> str:
    """The message of the kernel error that stands for ``exc``: it names the file, and for a
    full disk says so plainly with the space left, since SQLite's own words ("database or disk
    is full") leave the user guessing which disk and what to do."""
    if str(exc) != "database or disk is full":  # SQLITE_FULL (sqlite_errorcode is 3.11+ only)
        return f"SQLite database {path}: {exc}"
    directory = os.path.dirname(path)
    return (
        f"SQLite database {path}: the disk is full ({shutil.disk_usage(directory).free} bytes "
        f"free in {directory}), so this write was rolled back; free space there and kq workers "
        f"resume by themselves"
    )


def _set_up(conn: sqlite3.Connection, path: str, options: Options, schema: str) -> None:
    """WAL mode and the schema. Two processes opening a new file at once can get SQLITE_BUSY
    here without the busy handler being consulted (the switch to WAL needs an exclusive lock),
    so this step retries by itself until ``busy_timeout``."""
    deadline = time.monotonic() + options.busy_timeout
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode.lower() != "wal":
                raise ConfigurationError(
                    f"cannot put SQLite database {path} in WAL mode (got {mode!r}); kq needs WAL "
                    f"to share the file between processes (is it on a network filesystem?)"
                )
            # The level was validated against SYNCHRONOUS_LEVELS, so formatting it in is safe.
            conn.execute(f"PRAGMA synchronous={options.synchronous}")
            conn.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
            return
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            locked = "locked" in str(exc) or "busy" in str(exc)
            if not locked or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction, taking the write lock up front.

    A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY under
    WAL when another process wrote in between; ``BEGIN IMMEDIATE`` waits (busy timeout) instead.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite already rolled back after some errors (disk full)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
