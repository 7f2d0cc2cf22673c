"""kq-redis: Redis as kq's broker and result backend (``redis://``, ``rediss://``,
``redis+socket://``), in kombu's and Celery's layout so that kq and Celery share a Redis.

Only the hook implementations live here; the broker is :mod:`kq_redis.transport` and the
backend :mod:`kq_redis.backend`, imported when kq loads this plugin.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendSpec
from kq.transport import TransportSpec

from .backend import SCHEMES as BACKEND_SCHEMES
from .backend import RedisBackend
from .transport import SCHEMES as TRANSPORT_SCHEMES
from .transport import RedisTransport

__version__ = "0.1.0"


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=TRANSPORT_SCHEMES,
            factory=RedisTransport,
            description="Redis via redis-py: Lua batch fetch, leases, native delay, kombu layout",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=BACKEND_SCHEMES,
            factory=RedisBackend,
            description="Redis: Celery's result keys, native expiry, pub/sub wait",
        )
    ]
