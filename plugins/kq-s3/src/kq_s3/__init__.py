"""kq-s3: Amazon S3, or an S3-compatible store, as kq's result backend (``s3://bucket/prefix``).

Only the hook implementation lives here; boto3 is imported when the first backend is made
(:mod:`kq_s3.backend`), so kq processes that never use S3 do not pay for it.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy

__version__ = "0.1.0"

#: S3 keeps objects until deleted (lifecycle rules expire by whole days), and has no atomic
#: increment: chords count through the kernel's polling fallback, and unique tasks need a
#: backend with claims. Reads honour each result's expiry; cleanup() deletes expired ones.
CAPABILITIES = BackendCapabilities()


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("s3",),
            factory=lazy("kq_s3.backend:S3Backend"),
            capabilities=CAPABILITIES,
            description="Amazon S3 or an S3-compatible store via boto3: one object per result",
        )
    ]
