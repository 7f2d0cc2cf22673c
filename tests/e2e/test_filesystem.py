"""A real `kq worker` process with the SQLite broker keeping its results as files (kq-filesystem):
1,000 tasks, every value read back by a client through the directory, one file per result."""

import json
import pathlib
from collections.abc import Iterator

import pytest

from kq import App

pytestmark = pytest.mark.slow

TOTAL = 1_000


@pytest.fixture
def results_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "results"
    path.mkdir()
    return path


@pytest.fixture
def env(env: dict[str, str], results_dir: pathlib.Path) -> dict[str, str]:
    return {
        **env,
        "KQ_RESULT_BACKEND": f"file://{results_dir}",
        "KQ_RESULT_BACKEND_OPTIONS": json.dumps({"fanout": 1}),
    }


@pytest.fixture
def client(db_url: str, results_dir: pathlib.Path) -> Iterator[App]:
    app = App("client", broker=db_url, backend=f"file://{results_dir}")
    yield app
    app.close()


def test_1000_tasks_with_results_in_a_directory(client, start_worker, ran, results_dir):
    sent = [client.send_task("e2e.double", [n]) for n in range(TOTAL)]
    failed = client.send_task("e2e.fail", ["broken on purpose"])
    worker = start_worker("-P", "threads", "-c", "8")
    assert [result.get(timeout=120) for result in sent] == [2 * n for n in range(TOTAL)]
    with pytest.raises(ValueError, match="broken on purpose"):
        failed.get(timeout=60)
    assert worker.stop() == 0
    assert sorted(ran("ran")) == sorted(result.id for result in sent)
    files = [p for p in (results_dir / "results").rglob("celery-task-meta-*") if p.is_file()]
    assert len(files) == TOTAL + 1
    assert not list(results_dir.rglob(".tmp-*"))  # every write was renamed into place
