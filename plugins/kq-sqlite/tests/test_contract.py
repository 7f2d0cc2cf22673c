"""kq's contract suites, run against a real SQLite file in a temporary directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kq.testing.contracts import BackendContract, ScheduleStoreContract, TransportContract


class TestSQLiteTransport(TransportContract):
    @pytest.fixture
    def transport_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'broker.sqlite3'}"

    @pytest.fixture
    def visibility_timeout_options(self) -> dict[str, Any]:
        return {"visibility_timeout": 1}


class TestSQLiteBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'results.sqlite3'}"


class TestSQLiteScheduleStore(ScheduleStoreContract):
    @pytest.fixture
    def schedule_store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'beat.sqlite3'}"
