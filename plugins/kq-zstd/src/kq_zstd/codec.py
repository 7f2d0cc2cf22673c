"""zstd compression and bounded, truncation-checked inflation of message bodies."""

from __future__ import annotations

import threading

import zstandard

#: Output asked of the stream reader at a time: a body is read in pieces, so a small message
#: does not allocate a buffer the size of ``message_max_size``.
CHUNK = 64 * 1024


class _Contexts(threading.local):
    """A compressor and a decompressor per thread: building one costs about ten times what
    compressing a typical message does, and one instance must not serve two threads at once."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor()
        self.decompressor = zstandard.ZstdDecompressor()


_contexts = _Contexts()


def compress(data: bytes) -> bytes:
    """One zstd frame at the default level, its size written in the header (as kombu writes
    it, and as Celery's one-shot ``decompress`` needs)."""
    return _contexts.compressor.compress(data)


def decompress(data: bytes, limit: int) -> bytes:
    """The first frame of ``data`` inflated, or ``limit + 1`` bytes of it if it is larger.

    A frame whose header gives a size within ``limit`` (everything kq and kombu write) is
    inflated in one call, which fails if the frame is cut short or holds more than it says.
    Any other frame is read as a stream that stops after ``limit + 1`` bytes; if it ended
    before, a second pass, as bounded as the first, confirms that the frame was complete:
    the stream reader returns a truncated frame's bytes without complaint.
    """
    decompressor = _contexts.decompressor
    size = zstandard.frame_content_size(data)  # -1 if the header does not say; raises on garbage
    if 0 <= size <= limit:
        return decompressor.decompress(data)
    pieces: list[bytes] = []
    wanted = limit + 1
    with decompressor.stream_reader(data) as reader:
        while wanted:
            piece = reader.read(min(wanted, CHUNK))
            if not piece:
                break
            pieces.append(piece)
            wanted -= len(piece)
    body = b"".join(pieces)
    if len(body) <= limit:
        inflater = decompressor.decompressobj()
        inflater.decompress(data)
        if not inflater.eof:
            raise ValueError("zstd frame is truncated")
    return body
