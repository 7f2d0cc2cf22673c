"""kq's backend contract, run against the Django ORM on a real PostgreSQL server."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import BackendContract


class TestDjangoBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, django_database: str) -> str:
        return "django://"

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        # The spawned children of the races set Django up from this (DJANGO_SETTINGS_MODULE is
        # set too: either is enough).
        return {"settings": "kqdj_settings"}
