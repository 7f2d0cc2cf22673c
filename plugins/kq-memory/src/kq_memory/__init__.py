"""kq-memory: the ``memory://`` broker and result backend, living inside one process.

The plugin manager finds this module through the ``kq`` entry point ``memory`` and imports it in
every kq process, so it holds only the hook implementations and what they declare; the broker,
which is built on kombu, and the backend are imported when the first one is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy
from kq.transport import TransportCapabilities, TransportSpec

TRANSPORT_CAPABILITIES = TransportCapabilities(fanout=True, dead_letter=True)
BACKEND_CAPABILITIES = BackendCapabilities(push=True, shared=False, counters=True, claims=True)


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("memory",),
            factory=lazy("kq_memory.transport:MemoryTransport"),
            capabilities=TRANSPORT_CAPABILITIES,
            description="in-process queues (kombu's memory transport); threads of one process",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("memory",),
            factory=lazy("kq_memory.backend:MemoryBackend"),
            capabilities=BACKEND_CAPABILITIES,
            description="in-process results shared by every client and worker of one process",
        )
    ]
