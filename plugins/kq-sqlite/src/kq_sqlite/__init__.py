"""kq-sqlite: the embedded default broker and result backend (``sqlite:///kq.sqlite3``).

Only the hook implementations live here; the broker is in :mod:`kq_sqlite.transport` and the
backend in :mod:`kq_sqlite.backend`, imported when kq loads this plugin.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendSpec
from kq.transport import TransportSpec

from .backend import SQLiteBackend
from .transport import SQLiteTransport

__version__ = "0.1.0"


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("sqlite",),
            factory=SQLiteTransport,
            description="SQLite file shared by local processes (WAL, leases, no server)",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("sqlite",),
            factory=SQLiteBackend,
            description="SQLite file shared by local processes",
        )
    ]
