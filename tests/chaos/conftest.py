"""Fixtures of the chaos tests (tests/chaos): the PostgreSQL ledger every test checks."""

from collections.abc import Iterator

import pytest

from kq.testing.servers import require

from .harness import Ledger


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """A ledger table of the test's own in PostgreSQL, dropped afterwards."""
    host, port = require("postgresql")
    with Ledger.create(f"postgresql://postgres@{host}:{port}/test") as ledger:
        yield ledger
