"""The kernel's serializer contract, applied to msgpack (with a real worker on SQLite)."""

from __future__ import annotations

import pytest

from kq.testing.contracts import SerializerContract


class TestMsgpack(SerializerContract):
    @pytest.fixture
    def serializer_name(self) -> str:
        return "msgpack"
