"""The kernel's pool contract, applied to solo."""

from __future__ import annotations

import pytest

from kq.testing.contracts import PoolContract


class TestSoloPool(PoolContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "solo"

    @pytest.fixture
    def concurrency(self) -> int:
        return 1  # solo runs one job at a time whatever it is asked
