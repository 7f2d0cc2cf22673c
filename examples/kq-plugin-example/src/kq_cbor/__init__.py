"""kq-cbor: the ``cbor`` serializer for kq, a worked example of a third-party plugin.

CBOR (RFC 8949) is a compact binary format with a registered content type, readable from
most languages. kq imports this module in every kq process (entry point ``cbor`` in the ``kq``
group), so it only declares the serializer; cbor2 and the codec are imported when the first
message is encoded or decoded.

The package was started with ``kq plugin new cbor --kind serializer``; the JSON skeleton's
``dumps`` and ``loads`` were then replaced by :mod:`kq_cbor.codec`, keeping
``tests/test_contract.py`` green.
"""

from __future__ import annotations

from typing import Any

from kq import hookimpl
from kq.serialization import SerializerSpec

__all__ = ["CONTENT_TYPE", "NAME", "dumps", "kq_serializers", "loads"]

#: What users write in task_serializer, result_serializer and accept_content.
NAME = "cbor"
#: The IANA media type of CBOR (RFC 8949, section 9.5).
CONTENT_TYPE = "application/cbor"


def dumps(value: Any) -> bytes:
    """Encode a task's arguments or result (see :func:`kq_cbor.codec.dumps`)."""
    from .codec import dumps as encode  # cbor2 is imported on first use, not in every process

    return encode(value)


def loads(data: bytes) -> Any:
    """Decode a message body, refusing what a task never needs (see :func:`kq_cbor.codec.check`)."""
    from .codec import loads as decode

    return decode(data)


@hookimpl
def kq_serializers() -> list[SerializerSpec]:
    return [
        SerializerSpec(
            name=NAME,
            content_type=CONTENT_TYPE,
            dumps=dumps,
            loads=loads,
            content_encoding="binary",
            safe=True,  # check() refuses tags, unbounded lengths and deep nesting before decoding
            description="CBOR (RFC 8949): compact binary, safe for untrusted input",
        )
    ]
