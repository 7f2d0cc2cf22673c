"""kq-memcached: results in memcached (``memcached://host:port[,host2:port2]/``, or Celery's
``cache+memcached://host:port;host2:port2/``).

Every kq process imports this module, so it only declares the backend; the implementation and
pymemcache (:mod:`kq_memcached.backend`) are imported when the first backend is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy

__version__ = "0.1.0"

#: Celery spells it ``cache+memcached://``; both name the same backend.
SCHEMES = ("memcached", "cache+memcached")
#: memcached expires items itself; ``incr`` and ``add``/``cas`` are atomic on the server, so
#: chords count and unique tasks claim there. Readers poll (no push).
CAPABILITIES = BackendCapabilities(push=False, native_expiry=True, shared=True, counters=True, claims=True)


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=SCHEMES,
            factory=lazy("kq_memcached.backend:MemcachedBackend"),
            capabilities=CAPABILITIES,
            description="memcached via pymemcache; expiring, evictable, not persistent",
        )
    ]
