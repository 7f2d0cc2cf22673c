"""Celery and kq on one Amazon SQS queue (moto's server), results in Redis: a kq client's tasks
run by a real ``celery worker``, a Celery client's by a real ``kq worker``. kq-sqs sends kombu's
SQS messages, so each side reads the other's as its own."""

import json
import pathlib
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest

import kq
from kq import App
from kq.testing.aws import moto_server
from kq.testing.servers import delete_redis_keys, hold
from kq.testing.worker import WorkerProcess

pytestmark = pytest.mark.slow
TIMEOUT = 30
APPS = pathlib.Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))

from compat_celery import make_app  # noqa: E402


@pytest.fixture(scope="module")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def where(aws_endpoint: str) -> Iterator[dict[str, Any]]:
    """The test's SQS queue (kombu's URL form for a local endpoint, which Celery takes too) and
    Redis key prefix; the prefix's keys are deleted afterwards, moto forgets the queue.

    A queue per test: a stopped Celery worker may leave a long poll behind in the server (its
    asynchronous consumer does not wait for it), which would take the next test's message."""
    tag = uuid.uuid4().hex[:10]
    with hold("redis") as (host, port):
        where = {
            "broker_url": f"sqs://testing:testing@{urlsplit(aws_endpoint).netloc}",
            "backend_url": f"redis://{host}:{port}/15",
            "prefix": f"kqcompat-{tag}:",
            "queue": f"kq-compat-sqs-{tag}",
        }
        yield where
        delete_redis_keys(where["prefix"])


def env(where: dict[str, Any]) -> dict[str, str]:
    """Both workers' environment (the AWS credentials and region are in os.environ already)."""
    return {
        "KQ_BROKER_URL": where["broker_url"],
        "KQ_RESULT_BACKEND": where["backend_url"],
        "KQ_TASK_DEFAULT_QUEUE": where["queue"],
        "KQ_RESULT_BACKEND_OPTIONS": json.dumps({"global_keyprefix": where["prefix"]}),
        "COMPAT_BROKER_URL": where["broker_url"],
        "COMPAT_BACKEND_URL": where["backend_url"],
        "COMPAT_PREFIX": where["prefix"],
        "COMPAT_QUEUE": where["queue"],
        "PYTHONPATH": str(APPS),
    }


def run(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    worker.start()
    try:
        yield worker
        assert worker.stop() == 0, worker.output()
    finally:
        worker.__exit__(None, None, None)


@pytest.fixture
def celery_worker(where: dict[str, Any], tmp_path: pathlib.Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        "compat_celery", env=env(where), cwd=str(APPS), log_path=str(tmp_path / "celery.log")
    )
    worker.ready_marker = " ready."  # type: ignore[misc]
    worker.command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "compat_celery",
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-Q",
        where["queue"],
        "-l",
        "info",
    ]
    yield from run(worker)


@pytest.fixture
def kq_worker(where: dict[str, Any], tmp_path: pathlib.Path) -> Iterator[WorkerProcess]:
    yield from run(
        WorkerProcess(
            "compat_kq:app",
            ["-P", "threads", "-c", "2"],
            env=env(where),
            cwd=str(APPS),
            log_path=str(tmp_path / "kq.log"),
        )
    )


def test_a_celery_worker_runs_what_a_kq_client_sends(where: dict[str, Any], celery_worker) -> None:
    client = App(
        "compat-client",
        broker_url=where["broker_url"],
        result_backend=where["backend_url"],
        task_default_queue=where["queue"],
        result_backend_options={"global_keyprefix": where["prefix"]},
    )
    try:
        assert client.send_task("compat.add", [1, 2]).get(timeout=TIMEOUT) == 3
        earliest = datetime.now(timezone.utc) + timedelta(seconds=1)
        delayed = client.send_task("compat.add", [2, 2], countdown=1)  # SQS's DelaySeconds
        steps = [("compat.add", (1, 2)), ("compat.add", (3,)), ("compat.mul", (2,))]
        chained = kq.chain(kq.Signature(name, args, app=client) for name, args in steps).apply_async()
        assert chained.get(timeout=TIMEOUT) == 12
        assert delayed.get(timeout=TIMEOUT) == 4 and delayed.date_done >= earliest
    finally:
        client.close()


def test_a_kq_worker_runs_what_a_celery_client_sends(where: dict[str, Any], kq_worker) -> None:
    celery = make_app(where["broker_url"], where["backend_url"], where["prefix"], where["queue"])
    assert celery.send_task("compat.mul", (6, 7)).get(timeout=TIMEOUT) == 42
    result = celery.send_task("compat.fail", ("boom",))
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=TIMEOUT)
