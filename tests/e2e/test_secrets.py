"""Broker and backend passwords never reach a person: not the log of a real `kq worker` at
debug level, not `kq inspect`, `kq status`, `kq events --dump`, the dashboard's JSON or `kq beat`'s
log, and not the errors logged when the broker or the result backend cannot be reached.

Redis runs with a password through an ACL user of the test's own (the default user, which
every other test uses without one, is left alone).
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from kq.testing.servers import hold, require

from .conftest import APPS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
PASSWORD = "s3cret"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``redis://<user>:s3cret@.../15`` for a Redis ACL user made for the test, removed after."""
    with hold("redis") as (host, port):
        user = f"kqtest-{uuid.uuid4().hex[:8]}"
        admin = redis.Redis(host, port)
        admin.execute_command("ACL", "SETUSER", user, "on", f">{PASSWORD}", "~*", "&*", "+@all")
        try:
            yield f"redis://{user}:{PASSWORD}@{host}:{port}/15"
        finally:
            admin.execute_command("ACL", "DELUSER", user)
            admin.close()


@pytest.fixture
def broker_settings(redis_url: str, redis_prefix: str) -> dict[str, Any]:
    options = {"global_keyprefix": redis_prefix}
    return {
        "broker_url": redis_url,
        "result_backend": redis_url,
        "broker_transport_options": options,
        "result_backend_options": options,
    }


@pytest.fixture
def kq(env: dict[str, str]):
    """Run the `kq` command line with the test's settings; its stdout and stderr as one text."""

    def run(*args: str, extra_env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "kq", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env, **(extra_env or {})},
            timeout=60,
        )
        return done.stdout + done.stderr

    return run


@pytest.fixture
def background(env: dict[str, str]) -> Iterator:
    """``background(*args)`` starts ``kq ARGS`` (stderr piped); all are stopped at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "kq", *args],
            env={**os.environ, **env},
            cwd=str(APPS),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_worker_inspect_status_events_dashboard_and_beat_never_show_the_password(
    kq, background, client, start_worker, start_beat, redis_url
):
    masked = redis_url.replace(f":{PASSWORD}@", ":**@")
    name = f"s{uuid.uuid4().hex[:6]}-0@test"
    events = background("events", "--dump", "--duration", "20")  # outlasts the tasks below
    assert "listening for events" in events.stderr.readline()
    dashboard = background("dashboard", "-A", "e2e_app:app", "--port", "0")
    started = dashboard.stderr.readline()
    assert (match := re.search(r"http://127\.0\.0\.1:(\d+)/", started)), started
    port = match[1]
    worker = start_worker("-P", "threads", "-c", "2", "-l", "debug", "-E", name=name.partition("0@")[0])
    assert client.send_task("e2e.add", [1, 2]).get(timeout=30) == 3
    with pytest.raises(ValueError):
        client.send_task("e2e.fail", ["boom"]).get(timeout=30)
    shown = {
        command: kq(*command.split(), "-d", name, "--timeout", "10")
        for command in (
            "inspect stats",
            "inspect stats --json",
            "inspect ping",
            "status",
            "inspect registered",
            "inspect active_queues",
        )
    }
    shown["queues"] = kq("queues")
    deadline = time.monotonic() + 30  # the dashboard asks the workers for stats every second
    while True:
        overview = get_json(f"http://127.0.0.1:{port}/api/overview")
        if any(w["name"] == name and w.get("total") for w in overview["workers"]):
            break
        assert time.monotonic() < deadline, overview
        time.sleep(0.2)
    shown["dashboard overview"] = json.dumps(overview)
    shown["dashboard tasks"] = json.dumps(get_json(f"http://127.0.0.1:{port}/api/tasks"))
    schedule = {
        "KQ_BEAT_SCHEDULE": json.dumps(
            {"tick": {"task": "beat.tick", "schedule": 3600, "options": {"queue": "unused"}}}
        )
    }
    beat = start_beat("-l", "debug", extra_env=schedule)
    assert beat.stop() == 0
    shown["kq beat log"] = beat.output()
    shown["kq beat --list"] = kq("beat", "-A", "beat_app:app", "--list", extra_env=schedule)
    assert worker.stop() == 0
    shown["worker log"] = worker.output()
    shown["events"] = events.communicate(timeout=30)[0]

    for what, text in shown.items():
        assert PASSWORD not in text, what
    for what in ("inspect stats", "inspect stats --json", "dashboard overview", "worker log"):
        assert masked in shown[what], what  # the URL is there, masked: the right text was read
    assert f'"hostname": "{name}"' in shown["events"] and "task-failed" in shown["events"]
    assert "DEBUG" in shown["worker log"] and "kq beat" in shown["kq beat log"]


UNREACHABLE = {
    # Nothing listens on port 1.
    "redis-down": {"KQ_BROKER_URL": f"redis://kquser:{PASSWORD}@127.0.0.1:1/15"},
    # RabbitMQ refuses the login: guest's password is not this one.
    "rabbitmq-refuses": {
        "KQ_BROKER_URL": f"amqp://guest:{PASSWORD}@127.0.0.1:5672//",
        "KQ_RESULT_BACKEND": "none",
    },
    # The SQLite broker works; the PostgreSQL result backend is down.
    "postgresql-down": {
        "KQ_RESULT_BACKEND": f"db+postgresql://kq:{PASSWORD}@127.0.0.1:1/test",
        "KQ_RESULT_STORE_TIMEOUT": "1",
    },
}


@pytest.mark.parametrize("broker_settings", [{}])
@pytest.mark.parametrize("case", list(UNREACHABLE))
def test_errors_about_an_unreachable_server_never_show_the_password(case, kq, env, tmp_path, broker_settings):
    if case == "rabbitmq-refuses":
        require("rabbitmq")
    settings = {**env, **UNREACHABLE[case]}
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kq",
                "worker",
                "-A",
                "e2e_app:app",
                "-l",
                "debug",
                "-P",
                "threads",
                "-n",
                f"{case}@test",
            ],
            env={**os.environ, **settings},
            cwd=str(APPS),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        shown = {"call": kq("call", "e2e.add", "-a", "[1, 2]", extra_env=settings)}
        wanted = "could not store the result" if case == "postgresql-down" else "connection lost"
        deadline = time.monotonic() + 60
        while wanted not in log_path.read_text() and worker.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        shown["status"] = kq("status", "--timeout", "0.5", extra_env=settings)
    finally:
        worker.terminate()
        worker.wait(60)
    shown["worker log"] = log_path.read_text()
    for what, text in shown.items():
        assert PASSWORD not in text, what
    assert ":**@127.0.0.1:" in shown["worker log"]  # the error named the server, masked
