"""1,000 tasks through a real ``kq worker`` process whose results go to the Django ORM on
PostgreSQL (broker: a SQLite file), read back by this process through the same backend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kq import App, Signature
from kq.states import SUCCESS
from kq.testing.worker import WorkerProcess

pytestmark = pytest.mark.slow


def test_a_thousand_results_through_a_worker_process(tmp_path: Path, worker_env: dict[str, str]) -> None:
    from kq_django.models import TaskResult

    broker = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    client = App("kqdj.client", broker=broker, backend="django://")
    results = client.send_many(Signature("kqdj.square", (n,), app=client) for n in range(1000))
    ids = [r.id for r in results]
    worker = WorkerProcess(
        "kqdj_tasks:app",
        ["-P", "threads", "-c", "8"],
        env={**worker_env, "KQDJ_BROKER_URL": broker, "KQDJ_CONN_MAX_AGE": "60"},
        cwd=str(tmp_path),
        log_path=str(tmp_path / "worker.log"),
    )
    with worker.start():
        deadline = time.monotonic() + 120
        while True:
            found = client.backend.get_many(ids)
            if all(r is not None and r.state == SUCCESS for r in found):
                break
            assert time.monotonic() < deadline, (
                f"{sum(r is not None for r in found)} of 1000 results after 120 s:\n{worker.output()[-3000:]}"
            )
            time.sleep(0.2)
        assert worker.stop() == 0
    assert [r.get(timeout=5) for r in results] == [n * n for n in range(1000)]
    assert TaskResult.objects.filter(task_id__in=ids, state=SUCCESS).count() == 1000
    client.close()
