"""The kernel's pool contract, applied to gevent in a monkey-patched process.

Unpatched, a greenlet pool cannot pass it: the contract's jobs wait on ``threading`` barriers and
events, which then block the one thread every greenlet shares. ``test_patched.py`` runs this
module in a process patched before anything else is imported, as ``kq worker -P gevent`` is.
"""

from __future__ import annotations

import pytest
from gevent import monkey

from kq.testing.contracts import PoolContract

if not monkey.is_module_patched("threading"):
    pytest.skip("runs monkey-patched, from test_patched.py", allow_module_level=True)


class TestGeventPool(PoolContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "gevent"
