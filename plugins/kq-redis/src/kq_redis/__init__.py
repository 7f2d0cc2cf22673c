"""kq-redis: Redis as kq's broker and result backend (``redis://``, ``rediss://``,
``redis+socket://``), in kombu's and Celery's layout so that kq and Celery share a Redis.

Every kq process imports this module, so it holds only the hook implementations and what they
declare; the broker (:mod:`kq_redis.transport`), the backend (:mod:`kq_redis.backend`) and beat's
schedule store (:mod:`kq_redis.beat_store`), with redis-py, are imported when the first one is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import ScheduleStoreSpec, lazy
from kq.transport import TransportCapabilities, TransportSpec

__version__ = "0.1.0"

#: The broker and the backend serve the same URLs.
TRANSPORT_SCHEMES = BACKEND_SCHEMES = ("redis", "rediss", "redis+socket")
TRANSPORT_CAPABILITIES = TransportCapabilities(
    priorities=True, native_delay=True, visibility_timeout=True, fanout=True, dead_letter=True
)
BACKEND_CAPABILITIES = BackendCapabilities(
    push=True, native_expiry=True, shared=True, counters=True, claims=True
)


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=TRANSPORT_SCHEMES,
            factory=lazy("kq_redis.transport:RedisTransport"),
            capabilities=TRANSPORT_CAPABILITIES,
            description="Redis via redis-py: Lua batch fetch, leases, native delay, kombu layout",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=BACKEND_SCHEMES,
            factory=lazy("kq_redis.backend:RedisBackend"),
            capabilities=BACKEND_CAPABILITIES,
            description="Redis: Celery's result keys, native expiry, pub/sub wait",
        )
    ]


@hookimpl
def kq_schedule_stores() -> list[ScheduleStoreSpec]:
    return [
        ScheduleStoreSpec(
            schemes=BACKEND_SCHEMES,
            factory=lazy("kq_redis.beat_store:RedisScheduleStore"),
            description="beat's lock (SET NX PX, server clock) and last runs, fenced by Lua",
        )
    ]
