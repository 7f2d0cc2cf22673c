"""kq's serializer contract, applied to kq-cbor: these tests define "works"."""

from __future__ import annotations

import pytest

from kq.testing.contracts import SerializerContract


class TestCborSerializer(SerializerContract):
    @pytest.fixture
    def serializer_name(self) -> str:
        return "cbor"
