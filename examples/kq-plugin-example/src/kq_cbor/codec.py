"""CBOR (RFC 8949) bodies: cbor2 encodes and decodes, a strict scan decides what may be decoded.

cbor2 is a complete CBOR implementation, and that is the problem for a task queue: on decoding
it turns semantic tags into Python objects (datetimes, regular expressions, MIME messages,
shared and string references that make one small item stand for many), and a header may
announce far more bytes or items than the body holds. A worker decodes bytes from anyone, so
:func:`check` walks the body first, without building anything, and lets through only what a
task's arguments need: integers (bignums too), floats, text, bytes, true/false/null, arrays and
maps with text keys, every length bounded by the bytes that remain, nesting bounded, one item
and nothing after it. Only then does cbor2 build the value.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import cbor2

from kq.serialization import to_plain

#: Deeper nesting is refused: no task argument needs it, and decoders recurse per level.
MAX_DEPTH = 100

#: Tags 2 and 3 (RFC 8949 3.4.3) are integers too big for 64 bits, written as a byte string.
BIGNUM_TAGS = (2, 3)
#: Major type 7: false, true, null; half, single and double floats (with the bytes they take).
SIMPLE = {20: 0, 21: 0, 22: 0, 25: 2, 26: 4, 27: 8}


def _plain(encoder: cbor2.CBOREncoder, value: Any) -> None:
    encoder.encode(to_plain(value))


#: cbor2 would write these with tags that :func:`check` refuses; write what kq's json writes
#: (ISO 8601 strings, strings, lists), so a task receives the same arguments in either format.
ENCODERS = {datetime: _plain, date: _plain, UUID: _plain, Decimal: _plain, set: _plain, frozenset: _plain}


def dumps(value: Any) -> bytes:
    """Encode ``value``, and refuse at once what a worker would refuse.

    Types cbor2 writes with other tags (fractions, regular expressions, IP addresses, ...) and
    maps with keys other than text encode without complaint but would be rejected by every
    worker, so the client checks its own output and raises ``ValueError`` (kq reports an
    EncodeError naming the task) instead of sending a message no one can run. Types cbor2 does
    not know raise ``TypeError``.
    """
    data = cbor2.dumps(value, encoders=ENCODERS, default=_plain)
    try:
        check(data)
    except ValueError as exc:
        raise ValueError(f"cannot send this value as CBOR that workers accept: {exc}") from None
    return data


def loads(data: bytes) -> Any:
    """Decode one CBOR item, after :func:`check` accepted the bytes; ``ValueError`` if not.

    What the scan leaves to cbor2 is the content of strings: text that is not UTF-8 fails there.
    """
    check(data)
    try:
        return cbor2.loads(data)
    except cbor2.CBORError as exc:
        raise ValueError(f"invalid CBOR: {exc}") from exc


def check(data: bytes) -> None:
    """Raise ``ValueError`` unless ``data`` is exactly one item of the accepted subset.

    One pass, no allocation beyond a stack of open arrays and maps: each frame counts the items
    still due in it (a map's entries count twice, key and value; a key is due when the count is
    even) and whether it is a map.
    """
    end = len(data)
    pos = 0
    stack: list[list[Any]] = [[1, False]]  # the top-level item
    while stack:
        frame = stack[-1]
        if frame[0] == 0:
            stack.pop()
            continue
        is_key = frame[1] and frame[0] % 2 == 0
        frame[0] -= 1
        if pos >= end:
            raise ValueError("truncated CBOR: an item is missing")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if is_key and major != 3:
            raise ValueError("CBOR map keys must be text")
        if major == 7:
            if info not in SIMPLE:
                raise ValueError(
                    f"CBOR simple value {info} is not accepted (undefined, breaks "
                    f"and unassigned values have no meaning in a task)"
                )
            pos += SIMPLE[info]
            if pos > end:
                raise ValueError("truncated CBOR float")
            continue
        if info < 24:
            argument = info
        elif info < 28:
            size = 1 << (info - 24)
            if pos + size > end:
                raise ValueError("truncated CBOR header")
            argument = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:  # 31: indefinite length, which no encoder of task data needs; 28-30: reserved
            raise ValueError("indefinite-length or reserved CBOR items are not accepted")
        if major in (0, 1):
            continue
        if major in (2, 3):
            if argument > end - pos:
                raise ValueError(f"a CBOR string claims {argument} bytes; {end - pos} remain")
            pos += argument
            continue
        if major == 6:
            if argument not in BIGNUM_TAGS or pos >= end or data[pos] >> 5 != 2:
                raise ValueError(
                    f"CBOR tag {argument} is not accepted (only bignums, tags 2 and 3, "
                    f"on a byte string): tags make the decoder build objects"
                )
            frame[0] += 1  # the tag wraps the next item, which stands in its place
            continue
        # 4: array, 5: map. Every item takes at least one byte.
        items = argument * 2 if major == 5 else argument
        if items > end - pos:
            raise ValueError(
                f"a CBOR {'map' if major == 5 else 'array'} claims {argument} "
                f"{'entries' if major == 5 else 'items'}; {end - pos} bytes remain"
            )
        if len(stack) > MAX_DEPTH:
            raise ValueError(f"CBOR nested deeper than {MAX_DEPTH} levels")
        stack.append([items, major == 5])
    if pos != end:
        raise ValueError(f"{end - pos} bytes after the CBOR item")
