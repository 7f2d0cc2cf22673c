"""kq-dynamodb: Amazon DynamoDB as kq's result backend (``dynamodb://region/table``).

Only the hook implementation lives here; boto3 is imported when the first backend is made
(:mod:`kq_dynamodb.backend`), so kq processes that never use DynamoDB do not pay for it.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy

__version__ = "0.1.0"

#: Conditional writes and ``UpdateItem ADD`` are atomic in DynamoDB, so counters and claims are
#: native; DynamoDB's TTL deletes expired items by itself (late: reads check the expiry).
CAPABILITIES = BackendCapabilities(native_expiry=True, counters=True, claims=True)


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("dynamodb",),
            factory=lazy("kq_dynamodb.backend:DynamoDBBackend"),
            capabilities=CAPABILITIES,
            description="Amazon DynamoDB via boto3: TTL expiry, atomic counters and claims",
        )
    ]
