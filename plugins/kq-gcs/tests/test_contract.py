"""kq's result backend contract against a local Cloud Storage emulator."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import BackendContract


class TestGCSBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, gcs_url: str) -> str:
        return gcs_url

    @pytest.fixture
    def backend_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return options
