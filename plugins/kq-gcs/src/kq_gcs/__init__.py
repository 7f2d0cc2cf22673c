"""kq-gcs: task results in Google Cloud Storage (``gs://bucket/prefix``, Celery's URL).

Every kq process imports this module, so it holds only the hook implementation and what it
declares; the backend (:mod:`kq_gcs.backend`) and google-cloud-storage are imported when the
first backend is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy

__version__ = "0.1.0"

#: No push, no per-object expiry kq can set (lifecycle rules act in whole days), no counters and
#: no claims: chords settle through the kernel's ``kq.chord_unlock`` task, which reads the
#: header's results, and unique tasks need a backend with claims. (GCS's generation
#: preconditions could make both atomic, but no local emulator honours them, so kq cannot test
#: them and does not claim them.)
CAPABILITIES = BackendCapabilities()


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("gs",),
            factory=lazy("kq_gcs.backend:GCSBackend"),
            capabilities=CAPABILITIES,
            description="Google Cloud Storage: one object per result, state and expiry in its metadata",
        )
    ]
