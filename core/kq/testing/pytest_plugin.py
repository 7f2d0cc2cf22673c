"""kq's pytest plugin, loaded automatically wherever kq is installed (entry point ``pytest11``).

Fixtures:

* ``kq_broker_url`` / ``kq_backend_url``: where the test app sends tasks and keeps results. By
  default a fresh SQLite file per test (needs kq-sqlite); override the fixtures, or set
  ``KQ_TEST_BROKER_URL`` / ``KQ_TEST_BACKEND_URL``, to run the same tests on another broker.
* ``kq_app``: an :class:`~kq.App` on those URLs.
* ``kq_worker``: a real worker for ``kq_app`` running in a thread (threads pool, 4 slots).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..app import App
from ..worker import Worker
from .worker import worker_thread


@pytest.fixture
def kq_broker_url(tmp_path: Path) -> str:
    return os.environ.get("KQ_TEST_BROKER_URL") or f"sqlite:///{tmp_path / 'kq.sqlite3'}"


@pytest.fixture
def kq_backend_url(tmp_path: Path) -> str:
    return os.environ.get("KQ_TEST_BACKEND_URL") or f"sqlite:///{tmp_path / 'kq.sqlite3'}"


@pytest.fixture
def kq_app(kq_broker_url: str, kq_backend_url: str) -> Iterator[App]:
    app = App("kq.test", broker=kq_broker_url, backend=kq_backend_url)
    yield app
    app.close()


@pytest.fixture
def kq_worker(kq_app: App) -> Iterator[Worker]:
    """A worker consuming ``kq_app``'s default queue. Register tasks before requesting it."""
    with worker_thread(kq_app, pool="threads", concurrency=4) as worker:
        yield worker
