"""The kernel's serializer contract, applied to YAML (with a real worker on SQLite)."""

from __future__ import annotations

import pytest

from kq.testing.contracts import SerializerContract


class TestYaml(SerializerContract):
    @pytest.fixture
    def serializer_name(self) -> str:
        return "yaml"
