"""The kernel's pool contract, applied to threads."""

from __future__ import annotations

import pytest

from kq.testing.contracts import PoolContract


class TestThreadPool(PoolContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "threads"
