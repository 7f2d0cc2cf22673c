"""kq's backend contract, run against real PostgreSQL and MariaDB servers."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import BackendContract


class TestPostgreSQLBackend(BackendContract):
    @pytest.fixture
    def database(self) -> str:
        return "postgresql"

    @pytest.fixture
    def backend_url(self, url: str) -> str:
        return url

    @pytest.fixture
    def backend_options(self, table: str) -> dict[str, Any]:
        return {"table_name": table}


class TestMySQLBackend(TestPostgreSQLBackend):
    @pytest.fixture
    def database(self) -> str:
        return "mysql"
