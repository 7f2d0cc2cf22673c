"""What is special to zstd: frames written without their size, frames that misstate it, and
frames from several threads at once."""

from __future__ import annotations

import os
import threading

import pytest
import zstandard

from kq import App
from kq_zstd import CONTENT_TYPE, compress, decompress

LIMIT = 64 * 1024


def streamed(data: bytes) -> bytes:
    """A frame as a streaming writer makes it: its header does not say how big it is."""
    compressor = zstandard.ZstdCompressor().compressobj()
    frame = compressor.compress(data) + compressor.flush()
    assert zstandard.frame_content_size(frame) == -1
    return frame


def test_an_app_finds_it_by_name_and_by_kombus_content_type(tmp_path):
    app = App(broker=f"sqlite:///{tmp_path}/kq.db", task_compression="zstd")
    app.check()
    assert app.codec.compression("zstd").content_type == CONTENT_TYPE == "application/zstd"
    assert app.codec.compression("zstandard") is app.codec.compression("zstd")


def test_frames_carry_their_size_so_one_shot_decoders_read_them():
    body = os.urandom(1000) * 3
    frame = compress(body)
    assert zstandard.frame_content_size(frame) == len(body)
    assert zstandard.ZstdDecompressor().decompress(frame) == body


def test_a_frame_without_its_size_is_read_and_bounded():
    body = b"abc" * 5000
    assert decompress(streamed(body), LIMIT) == body
    bomb = streamed(b"\0" * (LIMIT * 64))
    assert len(decompress(bomb, LIMIT)) == LIMIT + 1


def test_a_truncated_frame_without_its_size_is_refused():
    frame = streamed(os.urandom(4096))
    with pytest.raises(ValueError, match="truncated"):
        decompress(frame[: len(frame) // 2], LIMIT)


def test_a_frame_that_understates_its_size_is_refused():
    frame = bytearray(compress(b"a" * 1000))
    # Single-segment frame, 2-byte size field after the descriptor byte: size - 256, little-endian.
    assert frame[4] == 0b0110_0000
    frame[5:7] = (500 - 256).to_bytes(2, "little")
    assert zstandard.frame_content_size(bytes(frame)) == 500
    with pytest.raises(zstandard.ZstdError):
        decompress(bytes(frame), LIMIT)


def test_a_frame_that_overstates_its_size_past_the_limit_is_refused():
    frame = bytearray(compress(b"a" * 1000))
    frame[4] = 0b1010_0000  # single segment, 4-byte size field
    frame[5:7] = b""
    frame[5:5] = (LIMIT * 2).to_bytes(4, "little")
    assert zstandard.frame_content_size(bytes(frame)) == LIMIT * 2
    with pytest.raises((ValueError, zstandard.ZstdError)):
        decompress(bytes(frame), LIMIT)


def test_threads_compress_and_inflate_at_once():
    bodies = [os.urandom(512) * (n + 1) for n in range(8)]
    failures: list[BaseException] = []

    def work(body: bytes) -> None:
        try:
            for _ in range(200):
                assert decompress(compress(body), LIMIT) == body
        except BaseException as exc:  # reported to the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
