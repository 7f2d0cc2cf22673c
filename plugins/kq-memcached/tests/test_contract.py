"""kq's backend contract on a real memcached started for the session."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kq.testing.contracts import BackendContract


class TestMemcachedBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, memcached: tuple[str, int]) -> str:
        host, port = memcached
        return f"memcached://{host}:{port}/"

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {"key_prefix": f"t{uuid.uuid4().hex[:8]}:"}
