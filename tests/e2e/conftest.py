"""Fixtures for end-to-end tests: a SQLite broker file, a ledger, real worker processes."""

import json
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from kq import App
from kq.testing.servers import delete_amqp_queues, delete_redis_keys, hold, require
from kq.testing.worker import BeatProcess, WorkerProcess

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
def broker_settings() -> dict[str, Any]:
    """Settings that move the test's broker off its SQLite file; a module overrides this, e.g.
    with ``request.getfixturevalue("redis_broker")``, to run on a real server."""
    return {}


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of the test's own in Redis database 15; its keys are deleted afterwards."""
    prefix = f"kqtest-{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_redis_keys(prefix)


@pytest.fixture
def redis_broker(redis_prefix: str) -> Iterator[dict[str, Any]]:
    """Broker settings for the real Redis (database 15) under the test's own key prefix, with
    the server lock held shared."""
    with hold("redis") as (host, port):  # waits while a restart test holds it alone
        yield {
            "broker_url": f"redis://{host}:{port}/15",
            "broker_transport_options": {"global_keyprefix": redis_prefix},
        }


@pytest.fixture
def amqp_queue() -> Iterator[str]:
    """A task queue of the test's own on the real RabbitMQ; it and its dead-letter queue are
    deleted afterwards."""
    host, port = require("rabbitmq")
    name = f"kq-e2e-{uuid.uuid4().hex[:10]}"
    yield name
    delete_amqp_queues(name, host=host, port=port)


@pytest.fixture
def amqp_broker(amqp_queue: str) -> dict[str, Any]:
    """Broker settings for the real RabbitMQ with the test's own task queue."""
    host, port = require("rabbitmq")
    return {"broker_url": f"amqp://guest:guest@{host}:{port}//", "task_default_queue": amqp_queue}


@pytest.fixture
def env(db_url: str, ledger: pathlib.Path, broker_settings: dict[str, Any]) -> dict[str, str]:
    as_env = {
        f"KQ_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in broker_settings.items()
    }
    return {
        "KQ_BROKER_URL": db_url,
        "KQ_RESULT_BACKEND": db_url,
        "KQ_TEST_LEDGER_DIR": str(ledger),
        "PYTHONPATH": str(APPS),
        **as_env,
    }


@pytest.fixture
def client(db_url: str, broker_settings: dict[str, Any]) -> Iterator[App]:
    """A client app on the test's SQLite file (or ``broker_settings``' broker); it sends the
    e2e tasks by name."""
    app = App("client", **{"broker_url": db_url, "result_backend": db_url, **broker_settings})
    yield app
    app.close()


@pytest.fixture
def start_worker(tmp_path: pathlib.Path, env: dict[str, str]) -> Iterator:
    """Start ``kq worker -A APP ARGS...`` processes (APP defaults to ``e2e_app:app``, any
    module in ``apps/`` will do), named ``<name><n>@test``; all are killed at teardown."""
    started: list[WorkerProcess] = []

    def start(
        *args: str, name: str = "w", app: str = "e2e_app:app", wait_ready: float = 30.0
    ) -> WorkerProcess:
        worker = WorkerProcess(
            app,
            ["-n", f"{name}{len(started)}@test", *args],
            env=env,
            cwd=str(APPS),
            log_path=str(tmp_path / f"{name}{len(started)}.log"),
        )
        started.append(worker)
        return worker.start(wait_ready=wait_ready)

    yield start
    for worker in started:
        worker.__exit__(None, None, None)


@pytest.fixture
def start_beat(tmp_path: pathlib.Path, env: dict[str, str]) -> Iterator:
    """Start ``kq beat -A beat_app:app ARGS...`` processes with ``extra_env`` on top of ``env``;
    all are killed at teardown."""
    started: list[BeatProcess] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> BeatProcess:
        beat = BeatProcess(
            "beat_app:app",
            ["-l", "info", *args],
            env={**env, **(extra_env or {})},
            cwd=str(APPS),
            log_path=str(tmp_path / f"beat{len(started)}.log"),
        )
        started.append(beat)
        return beat.start()

    yield start
    for beat in started:
        beat.__exit__(None, None, None)


#: How .ci/run starts Redis (DESIGN.md), for tests that stop it and start it again.
REDIS_SERVER = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def redis_up(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True).stdout.strip()
            == "PONG"
        ):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def redis_outage() -> Callable[[], AbstractContextManager[None]]:
    """``with redis_outage(): ...``: Redis is shut down for the block and started again after
    it, however the block ends. Only for tests that hold Redis alone (``hold(exclusive=True)``)."""

    @contextmanager
    def outage() -> Iterator[None]:
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], timeout=30)
        try:
            yield
        finally:
            if not redis_up(0.5):
                subprocess.run(REDIS_SERVER, check=True, timeout=30)
            assert redis_up(30), "redis-server did not come back"

    return outage
