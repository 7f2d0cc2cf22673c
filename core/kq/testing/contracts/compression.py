"""The compression contract: round trips, kombu-style lookup, and bounded inflation.

Subclass and name the format::

    class TestZstd(CompressionContract):
        @pytest.fixture
        def compression_name(self):
            return "zstd"
"""

from __future__ import annotations

import os

import pytest

from kq.codec import Codec, CompressionSpec, Limits
from kq.exceptions import MessageRejected
from kq.plugins import get_plugins
from kq.transport import Envelope

LIMIT = 64 * 1024


class CompressionContract:
    """Tests every compression plugin must pass. Subclasses provide ``compression_name``."""

    @pytest.fixture
    def compression_name(self) -> str:
        raise NotImplementedError("a CompressionContract subclass must provide compression_name")

    @pytest.fixture
    def codec(self) -> Codec:
        return Codec((p.spec for _, p in get_plugins().compressions.items()), limits=Limits(max_size=LIMIT))

    @pytest.fixture
    def spec(self, codec: Codec, compression_name: str) -> CompressionSpec:
        return codec.compression(compression_name)

    def test_found_by_name_alias_and_content_type(self, codec: Codec, spec: CompressionSpec) -> None:
        assert codec.compression(spec.content_type) is spec
        for alias in spec.aliases:
            assert codec.compression(alias) is spec
        assert "/" in spec.content_type

    @pytest.mark.parametrize(
        "body",
        [b"", b"x", b"[[1, 2], {}, {}]" * 100, os.urandom(4096)],
        ids=["empty", "one-byte", "repetitive", "random"],
    )
    def test_round_trip_through_the_header(self, codec: Codec, spec: CompressionSpec, body: bytes) -> None:
        sealed = codec.seal(Envelope(body, "application/json"), spec.name)
        assert sealed.headers["compression"] == spec.content_type
        opened = codec.open(sealed)
        assert opened.body == body
        assert "compression" not in opened.headers

    def test_compresses_repetitive_data(self, spec: CompressionSpec) -> None:
        body = b'{"k": "value"}' * 1000
        assert len(spec.compress(body)) < len(body) // 4

    def test_stops_inflating_at_the_limit(self, spec: CompressionSpec) -> None:
        bomb = spec.compress(b"\0" * (LIMIT * 64))
        assert len(spec.decompress(bomb, LIMIT)) <= LIMIT + 1

    def test_a_bomb_is_rejected_as_over_limit(self, codec: Codec, spec: CompressionSpec) -> None:
        bomb = spec.compress(b"\0" * (LIMIT * 64))
        assert len(bomb) < LIMIT  # small on the wire, so only inflation can catch it
        with pytest.raises(MessageRejected) as caught:
            codec.open(Envelope(bomb, "application/json", headers={"compression": spec.content_type}))
        assert caught.value.reason == "over-limit"

    @pytest.mark.parametrize("how", ["garbage", "truncated"])
    def test_corrupt_input_is_rejected(self, codec: Codec, spec: CompressionSpec, how: str) -> None:
        good = spec.compress(os.urandom(2048))
        data = b"\xff\x00 not compressed" if how == "garbage" else good[: len(good) // 2]
        with pytest.raises(MessageRejected) as caught:
            codec.open(Envelope(data, "application/json", headers={"compression": spec.content_type}))
        assert caught.value.reason == "decode"
