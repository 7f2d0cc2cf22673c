"""Fixtures for the wire-compatibility tests: a real Celery app and real ``celery worker`` and
``kq worker`` processes sharing a broker (Redis or RabbitMQ) and a Redis result backend.

Each test module gets, per broker, a queue of its own and a Redis key prefix of its own
(kombu's and Celery's ``global_keyprefix``, for the broker and the results alike); the workers
are started once per module and the keys and queues are deleted afterwards. On RabbitMQ, kq is
told to declare its queues as Celery does (no ``x-max-priority``, no dead-letter route): RabbitMQ
refuses to declare one queue with two sets of arguments.
"""

import json
import pathlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import amqp
import attrs
import pytest
from celery import Celery

from kq import App
from kq.testing.servers import delete_redis_keys, hold
from kq.testing.worker import WorkerProcess

APPS = pathlib.Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))  # the test process builds its Celery client from the same module

from compat_celery import make_app  # noqa: E402


class CeleryWorkerProcess(WorkerProcess):
    """A real ``celery worker`` subprocess, started and stopped like a ``kq worker`` one."""

    ready_marker = " ready."

    def __init__(self, app_spec: str, args: list[str], **kwargs: Any) -> None:
        super().__init__(app_spec, args, **kwargs)
        self.command = [sys.executable, "-m", "celery", "-A", app_spec, "worker", *args]


@attrs.frozen
class Setup:
    """Where one module's tasks travel and are stored, as both kq and Celery are told."""

    broker_url: str
    backend_url: str
    prefix: str
    queue: str
    #: kq's ``broker_transport_options`` for this broker.
    transport_options: dict[str, Any]

    def kq_settings(self) -> dict[str, Any]:
        settings = {
            "broker_url": self.broker_url,
            "result_backend": self.backend_url,
            "task_default_queue": self.queue,
            "broker_transport_options": self.transport_options,
        }
        if self.backend_url.startswith("redis"):
            settings["result_backend_options"] = {"global_keyprefix": self.prefix}
        return settings

    def env(self) -> dict[str, str]:
        """Environment of both kinds of worker process: ``KQ_*`` for kq, ``COMPAT_*`` for Celery."""
        kq_env = {
            f"KQ_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in self.kq_settings().items()
        }
        return {
            **kq_env,
            "COMPAT_BROKER_URL": self.broker_url,
            "COMPAT_BACKEND_URL": self.backend_url,
            "COMPAT_PREFIX": self.prefix,
            "COMPAT_QUEUE": self.queue,
            "PYTHONPATH": str(APPS),
        }


@contextmanager
def shared_setup(broker: str, backend: str = "redis") -> Iterator[Setup]:
    """A fresh queue and key prefix on ``broker`` (``redis`` or ``amqp``), results in Redis or,
    with ``backend="rpc"``, sent back over RabbitMQ; deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    prefix, queue = f"kqcompat-{tag}:", f"kq-compat-{tag}"
    with hold("redis") as (host, port):
        redis_url = f"redis://{host}:{port}/15"
        backend_url = "rpc://" if backend == "rpc" else redis_url
        if broker == "redis":
            # native_delay off: a message with an eta goes to the queue, where Celery looks.
            yield Setup(
                redis_url, backend_url, prefix, queue, {"global_keyprefix": prefix, "native_delay": False}
            )
            delete_redis_keys(prefix)
            return
        with hold("rabbitmq") as (amqp_host, amqp_port):
            yield Setup(
                f"amqp://guest:guest@{amqp_host}:{amqp_port}//",
                backend_url,
                prefix,
                queue,
                {"max_priority": None, "dead_letter": False},
            )
            delete_redis_keys(prefix)
            connection = amqp.Connection(f"{amqp_host}:{amqp_port}")
            connection.connect()
            try:
                channel = connection.channel()
                channel.queue_delete(queue)
                channel.exchange_delete(queue)  # Celery's: named after its default queue
            finally:
                connection.close()


@pytest.fixture(scope="module")
def result_backend() -> str:
    """Where results go: ``redis``; a module overrides it with ``rpc`` (RabbitMQ only)."""
    return "redis"


@pytest.fixture(scope="module", params=["redis", "amqp"])
def setup(request: pytest.FixtureRequest, result_backend: str) -> Iterator[Setup]:
    """The module's queue and key prefix, on each broker in turn."""
    with shared_setup(request.param, result_backend) as value:
        yield value


@pytest.fixture(scope="module")
def celery_app(setup: Setup) -> Celery:
    """A Celery client on the module's broker, queue and result prefix."""
    return make_app(setup.broker_url, setup.backend_url, setup.prefix, setup.queue)


@pytest.fixture(scope="module")
def kq_client(setup: Setup) -> Iterator[App]:
    """A kq client on the module's broker, queue and result prefix."""
    app = App("compat-client", **setup.kq_settings())
    yield app
    app.close()


def _run(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    """Start ``worker``; at teardown, stop it warmly (it must exit 0), or kill it."""
    worker.start()
    try:
        yield worker
        assert worker.stop() == 0, worker.output()
    finally:
        worker.__exit__(None, None, None)


@pytest.fixture(scope="module")
def kq_worker(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A real ``kq worker`` consuming the module's queue."""
    log = tmp_path_factory.mktemp("kq-worker") / "worker.log"
    yield from _run(
        WorkerProcess(
            "compat_kq:app",
            ["-P", "threads", "-c", "2", "-Q", setup.queue, "-n", f"{setup.queue}@test"],
            env=setup.env(),
            cwd=str(APPS),
            log_path=str(log),
        )
    )


@pytest.fixture(scope="module")
def celery_worker(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A real ``celery worker`` consuming the module's queue."""
    log = tmp_path_factory.mktemp("celery-worker") / "worker.log"
    yield from _run(
        CeleryWorkerProcess(
            "compat_celery",
            [
                "-P",
                "threads",
                "-c",
                "2",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-Q",
                setup.queue,
                "-n",
                f"{setup.queue}@test",
                "-l",
                "info",
            ],
            env=setup.env(),
            cwd=str(APPS),
            log_path=str(log),
        )
    )
