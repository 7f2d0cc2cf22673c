"""kq-azureblob: task results in Azure Blob Storage (``azureblockblob://``, Celery's scheme).

Every kq process imports this module, so it holds only the hook implementation and what it
declares; the backend (:mod:`kq_azureblob.backend`) and azure-storage-blob are imported when the
first backend is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy

__version__ = "0.1.0"

#: Blob Storage has no expiry kq can set per blob (lifecycle policies act in whole days) and no
#: push. Claims are atomic through conditional writes (``If-None-Match: *`` to create, ``If-Match``
#: to take over a lapsed one), which the service checks for every writer. No counters: a counter
#: would be one hot blob that every finishing chord task rewrites by compare-and-swap, two round
#: trips per try with the losers trying again (and one blob takes ~500 requests/s at most), so
#: chords use the kernel's ``kq.chord_unlock`` instead, which reads the header's results.
CAPABILITIES = BackendCapabilities(claims=True)


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("azureblockblob",),
            factory=lazy("kq_azureblob.backend:AzureBlobBackend"),
            capabilities=CAPABILITIES,
            description="Azure Blob Storage: one block blob per result, state and expiry in its "
            "metadata; claims by conditional writes",
        )
    ]
