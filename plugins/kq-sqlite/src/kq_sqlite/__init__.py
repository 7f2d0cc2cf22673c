"""kq-sqlite: the embedded default broker, result backend and beat schedule store
(``sqlite:///kq.sqlite3``).

Every kq process imports this module, so it holds only the hook implementations and what they
declare; the broker (:mod:`kq_sqlite.transport`), the backend (:mod:`kq_sqlite.backend`) and the
schedule store (:mod:`kq_sqlite.beat_store`), with :mod:`sqlite3`, are imported when the first
one is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import ScheduleStoreSpec, lazy
from kq.transport import TransportCapabilities, TransportSpec

__version__ = "0.1.0"

TRANSPORT_CAPABILITIES = TransportCapabilities(
    priorities=True, native_delay=True, visibility_timeout=True, fanout=True, dead_letter=True
)
BACKEND_CAPABILITIES = BackendCapabilities(
    push=False, native_expiry=False, shared=True, counters=True, claims=True
)


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("sqlite",),
            factory=lazy("kq_sqlite.transport:SQLiteTransport"),
            capabilities=TRANSPORT_CAPABILITIES,
            description="SQLite file shared by local processes (WAL, leases, no server)",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("sqlite",),
            factory=lazy("kq_sqlite.backend:SQLiteBackend"),
            capabilities=BACKEND_CAPABILITIES,
            description="SQLite file shared by local processes",
        )
    ]


@hookimpl
def kq_schedule_stores() -> list[ScheduleStoreSpec]:
    return [
        ScheduleStoreSpec(
            schemes=("sqlite",),
            factory=lazy("kq_sqlite.beat_store:SQLiteScheduleStore"),
            description="beat's lock and last runs in the SQLite file, for beats on one machine",
        )
    ]
