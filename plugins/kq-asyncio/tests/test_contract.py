"""The kernel's pool contract, applied to asyncio."""

from __future__ import annotations

import pytest

from kq.testing.contracts import PoolContract


class TestAsyncioPool(PoolContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "asyncio"
