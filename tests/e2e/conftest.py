"""Fixtures for end-to-end tests: a SQLite broker file, a ledger, real worker processes."""

import pathlib
from collections.abc import Iterator

import pytest

from kq import App
from kq.testing.worker import WorkerProcess

APPS = pathlib.Path(__file__).parent / "apps"


@pytest.fixture
def db_url(tmp_path: pathlib.Path) -> str:
    return f"sqlite:///{tmp_path / 'kq.sqlite3'}"


@pytest.fixture
def ledger(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "ledger"
    path.mkdir()
    return path


@pytest.fixture
def ran(ledger: pathlib.Path):
    """``ran(kind)``: every task id recorded as ``kind`` by any worker process, duplicates kept."""

    def read(kind: str) -> list[str]:
        ids: list[str] = []
        for path in sorted(ledger.glob(f"{kind}-*.log")):
            ids.extend(line for line in path.read_text().splitlines() if line)
        return ids

    return read


@pytest.fixture
def env(db_url: str, ledger: pathlib.Path) -> dict[str, str]:
    return {"KQ_BROKER_URL": db_url, "KQ_RESULT_BACKEND": db_url,
            "KQ_TEST_LEDGER_DIR": str(ledger), "PYTHONPATH": str(APPS)}


@pytest.fixture
def client(db_url: str) -> Iterator[App]:
    """A client app on the test's SQLite file; it sends the e2e tasks by name."""
    app = App("client", broker=db_url, backend=db_url)
    yield app
    app.close()


@pytest.fixture
def start_worker(tmp_path: pathlib.Path, env: dict[str, str]) -> Iterator:
    """Start ``kq worker -A APP ARGS...`` processes (APP defaults to ``e2e_app:app``, any
    module in ``apps/`` will do), named ``<name><n>@test``; all are killed at teardown."""
    started: list[WorkerProcess] = []

    def start(*args: str, name: str = "w", app: str = "e2e_app:app",
              wait_ready: float = 30.0) -> WorkerProcess:
        worker = WorkerProcess(app, ["-n", f"{name}{len(started)}@test", *args],
                               env=env, cwd=str(APPS),
                               log_path=str(tmp_path / f"{name}{len(started)}.log"))
        started.append(worker)
        return worker.start(wait_ready=wait_ready)

    yield start
    for worker in started:
        worker.__exit__(None, None, None)
