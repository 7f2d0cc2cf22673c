"""A real ``kq worker`` process consuming from the Pub/Sub emulator: every task runs once and
its result comes back, and a warm shutdown leaves nothing behind."""

from __future__ import annotations

import json
import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kq import App
from kq.testing.worker import WorkerProcess

pytestmark = pytest.mark.slow

APPS = pathlib.Path(__file__).parent / "apps"


@pytest.fixture
def settings(tmp_path: pathlib.Path, pubsub_url: str, pubsub_options: dict[str, Any]) -> dict[str, Any]:
    return {
        "broker_url": pubsub_url,
        "broker_transport_options": pubsub_options,
        "result_backend": f"sqlite:///{tmp_path / 'results.sqlite3'}",
        "task_default_queue": f"kq-worker-{uuid.uuid4().hex[:10]}",
    }


@pytest.fixture
def client(settings: dict[str, Any]) -> Iterator[App]:
    app = App("client", **settings)
    yield app
    app.close()


@pytest.fixture
def worker(tmp_path: pathlib.Path, settings: dict[str, Any], pubsub_emulator: str) -> Iterator[WorkerProcess]:
    env = {
        f"KQ_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in settings.items()
    }
    env.update(PYTHONPATH=str(APPS), PUBSUB_EMULATOR_HOST=os.environ["PUBSUB_EMULATOR_HOST"])
    worker = WorkerProcess(
        "gcpubsub_app:app",
        ["-P", "threads", "-c", "8", "-n", "pubsub@test"],
        env=env,
        cwd=str(APPS),
        log_path=str(tmp_path / "worker.log"),
    )
    yield worker
    worker.__exit__(None, None, None)


def test_tasks_through_pubsub_and_a_real_worker(client: App, worker: WorkerProcess) -> None:
    sent = [client.send_task("gcpubsub.double", [n]) for n in range(300)]
    worker.start()
    assert [result.get(timeout=120) for result in sent] == [2 * n for n in range(300)]
    assert worker.stop() == 0
