"""kq-memory: the ``memory://`` broker and result backend, living inside one process.

Only hook implementations live here; the plugin manager finds this module through the ``kq``
entry point ``memory``.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendSpec
from kq.transport import TransportSpec

from .backend import MemoryBackend
from .transport import MemoryTransport


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("memory",),
            factory=MemoryTransport,
            description="in-process queues (kombu's memory transport); threads of one process",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("memory",),
            factory=MemoryBackend,
            description="in-process results shared by every client and worker of one process",
        )
    ]
