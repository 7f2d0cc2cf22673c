"""kq's result-backend contract against DynamoDB (moto's server): results, counters, claims."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.aws import REGION
from kq.testing.contracts import BackendContract


class TestDynamoDBBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, table: str) -> str:
        return f"dynamodb://{REGION}/{table}"

    @pytest.fixture
    def backend_options(self, dynamodb_options: dict[str, Any]) -> dict[str, Any]:
        return dynamodb_options
