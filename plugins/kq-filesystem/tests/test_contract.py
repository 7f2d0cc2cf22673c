"""kq's backend contract on a real directory (the options' other values: test_filesystem.py)."""

from __future__ import annotations

import pathlib

import pytest

from kq.testing.contracts import BackendContract


class TestFilesystemBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, tmp_path: pathlib.Path) -> str:
        return f"file://{tmp_path}"
