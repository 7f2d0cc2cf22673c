"""Encoding and bounded decoding of msgpack bodies."""

from __future__ import annotations

from typing import Any

import msgpack

from kq.serialization import to_plain


def _default(value: Any) -> Any:
    if isinstance(value, int):  # the packer asks about an int only when it exceeds 64 bits
        raise ValueError(f"msgpack carries integers of at most 64 bits, not {value}")
    return to_plain(value)


def dumps(obj: Any) -> bytes:
    """Pack ``obj``; datetimes, UUIDs, Decimals and sets become what kq's json makes of them.

    ``use_bin_type`` keeps ``bytes`` and ``str`` apart on the wire (msgpack 2.0's format, which
    kombu writes too), so bytes come back as bytes and text as text.
    """
    packed: bytes = msgpack.packb(obj, use_bin_type=True, default=_default)
    return packed


def loads(data: bytes) -> Any:
    """Unpack one value, refusing anything the bytes cannot really hold.

    A msgpack header announces how many items or bytes follow; trusted as is, a 5-byte body
    claiming a 4-billion-item array would have the decoder allocate gigabytes. Every item takes
    at least one byte (a map entry two), so no honest length exceeds the body's size: that is
    the limit for each of them. Nesting is bounded by the C decoder's stack (``StackError``).

    Map keys must be text or bytes (``strict_map_key``): task keyword arguments are text anyway,
    and integer keys, whose hashes are not randomized, would let a sender make dict building
    quadratic. Timestamps (extension -1, which other msgpack writers use for datetimes) arrive
    as timezone-aware UTC datetimes, so a task never sees a msgpack-specific type for them.
    """
    size = len(data)
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        timestamp=3,
        max_str_len=size,
        max_bin_len=size,
        max_array_len=size,
        max_map_len=size // 2,
        max_ext_len=size,
    )
