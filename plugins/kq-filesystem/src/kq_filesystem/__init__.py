"""kq-filesystem: results kept as files in a directory (``file:///abs/path``), local or shared
between machines (NFS, SMB, a cluster filesystem).

Every kq process imports this module, so it only declares the backend; the implementation
(:mod:`kq_filesystem.backend`) is imported when the first backend is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy

__version__ = "0.1.0"

SCHEMES = ("file",)
#: No push (readers poll), no native expiry (``cleanup()`` scans); counters under ``flock``
#: and claims by atomic ``link`` make chords and unique tasks work across processes.
CAPABILITIES = BackendCapabilities(push=False, native_expiry=False, shared=True, counters=True, claims=True)


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=SCHEMES,
            factory=lazy("kq_filesystem.backend:FilesystemBackend"),
            capabilities=CAPABILITIES,
            description="one file per result in a directory (local or shared); atomic writes",
        )
    ]
