"""kq's result-backend contract against S3 (moto's server)."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import BackendContract


class TestS3Backend(BackendContract):
    @pytest.fixture
    def backend_url(self, bucket: str) -> str:
        return f"s3://{bucket}/results"

    @pytest.fixture
    def backend_options(self, s3_options: dict[str, Any]) -> dict[str, Any]:
        return s3_options
