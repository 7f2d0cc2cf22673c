"""Celery's own monitors watching a kq worker: ``celery events --dump`` (the event receiver Flower
uses too) run against a real ``kq worker -E`` on the real Redis and RabbitMQ, and ``celery inspect ping``,
which kq workers do not answer (see docs/migrating-from-celery.md#monitoring)."""

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kq import App
from kq.testing.servers import delete_amqp_queues, delete_redis_keys, free_port, hold, reachable
from kq.testing.worker import WorkerProcess

pytest.importorskip("celery")
pytestmark = pytest.mark.slow

CELERY = [sys.executable, "-m", "celery", "-A", "celery_app"]


class Output:
    """The lines a subprocess prints, read in a thread so the test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: [self._new.put(line) for line in stdout], daemon=True).start()

    def wait_for(self, found: Callable[[list[str]], bool], timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while not found(self.lines) and (remaining := deadline - time.monotonic()) > 0:
            try:
                self.lines.append(self._new.get(timeout=remaining))
            except queue.Empty:
                break
        return self.lines


@pytest.fixture(params=["redis", "rabbitmq"])
def apps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """Modules of a kq app and a Celery app on the same broker. On Redis: database 15 under a key
    prefix of the test's own, which kombu applies to its pub/sub channels as kq does. On RabbitMQ:
    the default vhost, where Celery and kq both declare the ``celeryev`` exchange."""
    prefix = f"kqtest-{uuid.uuid4().hex[:12]}:"
    with hold(request.param) as (host, port):
        if request.param == "redis":
            broker: dict[str, Any] = {
                "broker_url": f"redis://{host}:{port}/15",
                "broker_transport_options": {"global_keyprefix": prefix},
            }
        else:
            broker = {"broker_url": f"amqp://guest:guest@{host}:{port}//"}
        broker["result_backend"] = f"sqlite:///{tmp_path}/results.db"
        (tmp_path / "kq_app.py").write_text(
            "from kq import App\n"
            f"app = App('celmon', **{broker!r})\n"
            "@app.task(name='celmon.add')\n"
            "def add(x, y):\n"
            "    return x + y\n"
        )
        (tmp_path / "celery_app.py").write_text(
            "from celery import Celery\n"
            f"app = Celery('celmon', broker={broker['broker_url']!r})\n"
            f"app.conf.broker_transport_options = {broker.get('broker_transport_options', {})!r}\n"
        )
        yield broker, tmp_path
    if request.param == "redis":
        delete_redis_keys(prefix)


def test_celery_events_dump_shows_a_kq_worker_and_its_tasks(apps: tuple[dict[str, Any], Path]) -> None:
    broker, path = apps
    env = {**os.environ, "PYTHONPATH": str(path)}
    hostname, task_queue = f"celmon-{uuid.uuid4().hex[:8]}@test", f"celmon-{uuid.uuid4().hex}"
    dump = subprocess.Popen(
        [*CELERY, "events", "--dump"],
        cwd=path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    worker = WorkerProcess(
        "kq_app:app",
        ["-E", "-P", "threads", "-c", "2", "-Q", task_queue, "-n", hostname],
        cwd=str(path),
        log_path=str(path / "worker.log"),
    )
    client = App("client", **broker)
    try:
        output = Output(dump)
        assert any("starting capture" in line for line in output.wait_for(lambda lines: bool(lines), 30))
        worker.start()
        result = client.send_task("celmon.add", [2, 3], queue=task_queue)
        assert result.get(timeout=30) == 5

        def seen(lines: list[str], what: str, task: bool = False) -> list[str]:
            return [
                line
                for line in lines
                if line.startswith(f"{hostname} [")
                and f"] {what}" in line
                and (not task or f"celmon.add({result.id})" in line)
            ]

        lines = output.wait_for(
            lambda lines: bool(seen(lines, "task succeeded", task=True) and seen(lines, "heartbeat:")), 30
        )
        heartbeat = seen(lines, "heartbeat:")[0]
        for field in (
            "active=",
            "processed=",
            "freq=2.0",
            "sw_ident=kq",
            "sw_ver=",
            "sw_sys=",
            "loadavg=",
            "clock=",
            "pid=",
            "utcoffset=",
            "local_received=",
        ):
            assert field in heartbeat
        received = seen(lines, "task received:", task=True)
        assert received and "args=" in received[0] and "2, 3" in received[0]
        assert seen(lines, "task started:", task=True)
        assert "runtime=" in seen(lines, "task succeeded", task=True)[0]
    finally:
        worker.__exit__(None, None, None)
        dump.terminate()
        dump.wait(10)
        client.close()
        if broker["broker_url"].startswith("amqp"):
            delete_amqp_queues(task_queue)


def test_celery_inspect_ping_does_not_reach_a_kq_worker(apps: tuple[dict[str, Any], Path]) -> None:
    """kq's remote control is its own protocol (``kq.control``): Celery's ``celery.pidbox``
    commands go unanswered, and ``kq inspect ping`` is the way to ping a kq worker."""
    broker, path = apps
    hostname, task_queue = f"celmon-{uuid.uuid4().hex[:8]}@test", f"celmon-{uuid.uuid4().hex}"
    with WorkerProcess(
        "kq_app:app",
        ["-P", "threads", "-Q", task_queue, "-n", hostname],
        cwd=str(path),
        log_path=str(path / "worker.log"),
    ):
        kq_ping = subprocess.run(
            [sys.executable, "-m", "kq", "inspect", "ping", "-A", "kq_app:app", "-d", hostname],
            cwd=path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(path)},
            timeout=60,
        )
        assert hostname in kq_ping.stdout, kq_ping.stdout + kq_ping.stderr
        celery_ping = subprocess.run(
            [*CELERY, "inspect", "ping", "-d", hostname, "-t", "2"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(path)},
        )
        assert celery_ping.returncode != 0
        assert "No nodes replied" in celery_ping.stdout + celery_ping.stderr
    if broker["broker_url"].startswith("amqp"):
        delete_amqp_queues(task_queue)


def test_flower_shows_a_kq_worker_and_its_tasks(apps: tuple[dict[str, Any], Path]) -> None:
    """Flower's own state (built from the event stream, as its pages are) lists the kq worker and
    the task it ran, with the task's name, arguments, runtime and state."""
    pytest.importorskip("flower")
    broker, path = apps
    env = {**os.environ, "PYTHONPATH": str(path), "FLOWER_UNAUTHENTICATED_API": "true"}
    hostname, task_queue = f"celmon-{uuid.uuid4().hex[:8]}@test", f"celmon-{uuid.uuid4().hex}"
    port = free_port()
    flower = subprocess.Popen(
        [*CELERY, "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = App("client", **broker)
    try:
        with WorkerProcess(
            "kq_app:app",
            ["-E", "-P", "threads", "-Q", task_queue, "-n", hostname],
            cwd=str(path),
            log_path=str(path / "worker.log"),
        ):
            _until(lambda: reachable("127.0.0.1", port), 30)
            # Flower lists the worker once it hears from it: it is listening, so it will see
            # the task from its first event on.
            worker = _until(lambda: _dashboard_worker(port, hostname), 30)
            assert worker["status"] is True
            result = client.send_task("celmon.add", [20, 22], queue=task_queue)
            assert result.get(timeout=30) == 42

            def task() -> dict[str, Any] | None:
                found = _get_json(port, f"/api/task/info/{result.id}")
                return found if found and found.get("state") == "SUCCESS" else None

            info = _until(task, 30)
            assert info["name"] == "celmon.add" and info["worker"] == hostname
            # kq's task-succeeded event carries the runtime but not the result's repr (the value
            # is in the result backend): Flower shows the task's result as empty.
            assert info["args"] == "(20, 22)" and info["runtime"] >= 0
            # the count comes with the worker's next heartbeat
            _until(lambda: (_dashboard_worker(port, hostname) or {}).get("processed", 0) >= 1, 30)
    finally:
        flower.terminate()
        flower.wait(10)
        client.close()
        if broker["broker_url"].startswith("amqp"):
            delete_amqp_queues(task_queue)


def _get_json(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _dashboard_worker(port: int, hostname: str) -> dict[str, Any] | None:
    """The worker's row on Flower's workers page, which lists the workers the events announced."""
    rows = (_get_json(port, "/workers?json=1") or {}).get("data", [])
    return next((row for row in rows if row.get("hostname") == hostname), None)


def _until(found: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.2)
    return value
