"""kq's result backend contract (with counters and claims) against Azurite."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import BackendContract


class TestAzureBlobBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, azure_url: str) -> str:
        return azure_url

    @pytest.fixture
    def backend_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return options
