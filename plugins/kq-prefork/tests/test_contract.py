"""The kernel's pool contract, applied to prefork with forked and with spawned children."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import PoolContract


class TestPreforkPool(PoolContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "prefork"


class TestPreforkPoolSpawned(TestPreforkPool):
    """Spawned children start from nothing: the runner (the contract's picklable probe) and
    every job cross a pipe, and kq's signal handling must be installed in a fresh interpreter."""

    @pytest.fixture
    def pool_options(self) -> dict[str, Any]:
        return {"start_method": "spawn"}
