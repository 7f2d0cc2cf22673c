"""The kernel's compression contract, applied to zstd."""

from __future__ import annotations

import pytest

from kq.testing.contracts import CompressionContract


class TestZstdCompression(CompressionContract):
    @pytest.fixture
    def compression_name(self) -> str:
        return "zstd"
