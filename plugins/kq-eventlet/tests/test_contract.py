"""The kernel's pool contract, applied to eventlet in a monkey-patched process.

Unpatched, no green pool can pass it: its jobs wait on ``threading`` barriers and events, which
then block the one thread all green threads share. ``test_patched.py`` runs this module in a
process greened before anything else is imported, as ``kq worker -P eventlet`` is. The check
below looks at what is imported rather than importing eventlet, which would warn about
eventlet's deprecation in every test run.
"""

from __future__ import annotations

import sys

import pytest

from kq.testing.contracts import PoolContract

patcher = sys.modules.get("eventlet.patcher")
if patcher is None or not patcher.is_monkey_patched("thread"):
    pytest.skip("runs monkey-patched, from test_patched.py", allow_module_level=True)


class TestEventletPool(PoolContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "eventlet"
