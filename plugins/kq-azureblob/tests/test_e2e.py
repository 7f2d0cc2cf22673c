"""A real ``kq worker`` process (SQLite broker, threads pool) storing 1,000 results in Azurite,
read back by a client; and a chord, which settles through the kernel's ``kq.chord_unlock``
since this backend keeps no counters."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from kq import App, chord, signature
from kq.testing.worker import WorkerProcess

pytestmark = pytest.mark.slow

APPS = pathlib.Path(__file__).parent / "apps"


@pytest.fixture
def client(tmp_path: pathlib.Path, azure_url: str, options: dict[str, Any]) -> Iterator[App]:
    app = App(
        "client",
        broker=f"sqlite:///{tmp_path / 'broker.sqlite3'}",
        backend=azure_url,
        result_backend_options=options,
    )
    yield app
    app.close()


@pytest.fixture
def worker(tmp_path: pathlib.Path, azure_url: str, options: dict[str, Any]) -> Iterator[WorkerProcess]:
    env = {
        "KQ_BROKER_URL": f"sqlite:///{tmp_path / 'broker.sqlite3'}",
        "KQ_RESULT_BACKEND": azure_url,
        "KQ_RESULT_BACKEND_OPTIONS": json.dumps(options),
        "PYTHONPATH": str(APPS),
    }
    worker = WorkerProcess(
        "azureblob_app:app",
        ["-P", "threads", "-c", "8", "-n", "azblob@test"],
        env=env,
        cwd=str(APPS),
        log_path=str(tmp_path / "worker.log"),
    )
    yield worker.start()
    worker.__exit__(None, None, None)


def test_1000_tasks_with_results_in_blob_storage(
    client: App, worker: WorkerProcess, container: ContainerClient, key_prefix: str
) -> None:
    sent = [client.send_task("azblob.double", [n]) for n in range(1000)]
    failed = client.send_task("azblob.fail", ["broken on purpose"])
    assert [result.get(timeout=120) for result in sent] == [2 * n for n in range(1000)]
    with pytest.raises(ValueError, match="broken on purpose"):
        failed.get(timeout=60)
    header = [signature("azblob.double", (n,), app=client) for n in range(20)]
    assert chord(header, signature("azblob.tsum", app=client)).delay().get(timeout=60) == 380
    assert worker.stop() == 0
    names = {blob.name for blob in container.list_blobs(name_starts_with=f"{key_prefix}celery-task-meta-")}
    assert {f"{key_prefix}celery-task-meta-{result.id}" for result in [*sent, failed]} <= names
