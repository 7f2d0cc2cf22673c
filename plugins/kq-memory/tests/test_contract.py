"""The kernel's contract suites, run against ``memory://``."""

from __future__ import annotations

import pytest

from kq.testing.contracts import BackendContract, TransportContract


class TestMemoryTransport(TransportContract):
    @pytest.fixture
    def transport_url(self) -> str:
        return "memory://"


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend_url(self) -> str:
        return "memory://"
