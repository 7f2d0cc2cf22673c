"""kq's contract suites against a real Redis (database 15, a key prefix per test)."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import BackendContract, ScheduleStoreContract, TransportContract


class TestRedisTransport(TransportContract):
    @pytest.fixture
    def transport_url(self, redis_url: str) -> str:
        return redis_url

    @pytest.fixture
    def transport_options(self, prefix: str) -> dict[str, Any]:
        return {"global_keyprefix": prefix}

    @pytest.fixture
    def visibility_timeout_options(self) -> dict[str, Any]:
        return {"visibility_timeout": 1}


class TestRedisBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, redis_url: str) -> str:
        return redis_url

    @pytest.fixture
    def backend_options(self, prefix: str) -> dict[str, Any]:
        return {"global_keyprefix": prefix}


class TestRedisScheduleStore(ScheduleStoreContract):
    @pytest.fixture
    def schedule_store_url(self, redis_url: str) -> str:
        return redis_url

    @pytest.fixture
    def schedule_store_options(self, prefix: str) -> dict[str, Any]:
        return {"global_keyprefix": prefix}
