"""Remote control of real `kq worker` processes with the real `kq` command line: `kq inspect`,
`kq control`, `kq status` and `kq queues` on Redis, RabbitMQ and SQLite.

Workers get names of the test's own (``<prefix>0@test``): RabbitMQ is shared by every test run
at once, and a command sent to all workers reaches theirs too, so assertions only look at ours.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
BROKERS = pytest.mark.parametrize("broker_settings", ["sqlite", "redis", "amqp"], indirect=True)


@pytest.fixture
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Redis (the default here), RabbitMQ, or the test's SQLite file, as the test asks."""
    kind = getattr(request, "param", "redis")
    return {} if kind == "sqlite" else request.getfixturevalue(f"{kind}_broker")


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def kq(env):
    """Run the `kq` command line with the test's broker settings."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kq", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=timeout,
        )

    return run


def replies(done: subprocess.CompletedProcess) -> dict[str, Any]:
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@BROKERS
def test_ping_answers_from_two_workers_and_d_targets_one(kq, start_worker, prefix):
    for _ in range(2):
        start_worker("-P", "threads", "-c", "2", name=prefix)
    ours = {f"{prefix}0@test", f"{prefix}1@test"}
    everyone = replies(kq("inspect", "ping", "--json", "--timeout", "2"))
    assert ours <= set(everyone)
    assert all(everyone[name]["ok"]["pong"] is True for name in ours)
    one = replies(kq("inspect", "ping", "--json", "-d", f"{prefix}1@test", "--timeout", "10"))
    assert list(one) == [f"{prefix}1@test"]
    table = kq("inspect", "ping", "-d", ",".join(sorted(ours)), "--timeout", "10")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [f"{name}: pong" for name in sorted(ours)]
    status = kq("status", "-d", ",".join(sorted(ours)), "--timeout", "10")
    assert status.returncode == 0, status.stderr
    assert f"{prefix}0@test" in status.stdout and "2 workers online." in status.stdout
    nobody = kq("status", "-d", f"{prefix}9@test", "--timeout", "0.5")
    assert nobody.returncode == 1 and "0 workers online." in nobody.stdout


def test_rate_limit_changes_a_running_worker(kq, client, start_worker, prefix, ran):
    start_worker("-P", "threads", "-c", "4", name=prefix, app="rate_app:app")
    name = f"{prefix}0@test"
    before = [client.send_task("rate.free") for _ in range(6)]
    for result in before:
        result.get(timeout=10)
    unlimited = sorted(float(line.split()[0]) for line in ran("free"))
    done = kq("control", "rate_limit", "rate.free", "2/s", "-d", name, "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{name}: rate limit of rate.free set to 2/s"
    deadline = time.monotonic() + 10  # the change applies at the worker's next step
    while (
        replies(kq("inspect", "stats", "-d", name, "--timeout", "10", "--json"))[name]["ok"][
            "rate_limits"
        ].get("rate.free")
        != "2/s"
    ):
        assert time.monotonic() < deadline, "the new rate limit was not applied"
    after = [client.send_task("rate.free") for _ in range(6)]
    for result in after:
        result.get(timeout=30)
    limited = sorted(float(line.split()[0]) for line in ran("free"))[6:]
    print(
        f"\n6 tasks, no limit: {unlimited[-1] - unlimited[0]:.2f} s; at 2/s: {limited[-1] - limited[0]:.2f} s"
    )
    assert len(limited) == 6
    # Starts at least half a second apart (a little less for jitter), where none was before.
    assert all(b - a >= 0.45 for a, b in zip(limited, limited[1:], strict=False))
    assert limited[-1] - limited[0] >= 2.2
    assert unlimited[-1] - unlimited[0] < limited[-1] - limited[0]


def test_inspect_active_reserved_registered_stats(kq, client, start_worker, prefix, ledger):
    start_worker("-P", "threads", "-c", "1", name=prefix)
    name = f"{prefix}0@test"
    running = client.send_task("e2e.slow", [30])
    waiting = client.send_task("e2e.add", [2, 3])
    deadline = time.monotonic() + 20
    while not list(ledger.glob("started-*.log")):
        assert time.monotonic() < deadline, "the slow task did not start"
        time.sleep(0.05)
    ask = ("-d", name, "--timeout", "10", "--json")
    (active,) = replies(kq("inspect", "active", *ask))[name]["ok"]
    assert active["id"] == running.id and active["name"] == "e2e.slow"
    assert "30" in active["args"] and active["worker_pid"] > 0 and active["started"] <= time.time()
    assert [job["id"] for job in replies(kq("inspect", "reserved", *ask))[name]["ok"]] == [waiting.id]
    assert replies(kq("inspect", "scheduled", *ask))[name]["ok"] == []  # Redis holds ETAs itself
    registered = replies(kq("inspect", "registered", *ask))[name]["ok"]
    assert {"e2e.slow", "e2e.add", "e2e.double"} <= set(registered)
    stats = replies(kq("inspect", "stats", *ask))[name]["ok"]
    assert stats["pool"] == {"name": "threads", "concurrency": 1, "max_concurrency": 1, "autoscale": None}
    assert stats["total"]["received"] == 2 and stats["running"] == 1 and stats["reserved"] == 1
    assert stats["broker"].startswith("redis://") and stats["uptime"] > 0
    queue = client.conf.task_default_queue
    assert replies(kq("inspect", "active_queues", *ask))[name]["ok"] == [{"name": queue}]
    table = kq("inspect", "active", "-d", name, "--timeout", "10")
    assert table.returncode == 0 and running.id in table.stdout and "e2e.slow" in table.stdout
    client.revoke(running.id, terminate=True)


def test_add_consumer_and_queues(kq, client, start_worker, prefix):
    start_worker("-P", "threads", "-c", "2", name=prefix)
    name = f"{prefix}0@test"
    extra = f"extra-{prefix}"
    waiting = client.send_task("e2e.add", [1, 2], queue=extra)
    depths = json.loads(kq("queues", "-Q", f"{extra},{client.conf.task_default_queue}", "--json").stdout)
    assert depths == {extra: 1, client.conf.task_default_queue: 0}
    done = kq("control", "add_consumer", extra, "-d", name, "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert waiting.get(timeout=10) == 3
    queues = replies(kq("inspect", "active_queues", "-d", name, "--timeout", "10", "--json"))
    assert [q["name"] for q in queues[name]["ok"]] == [client.conf.task_default_queue, extra]
    grown = kq("control", "pool_grow", "2", "-d", name, "--timeout", "10")  # threads can resize
    assert grown.returncode == 0 and "pool grows by 2" in grown.stdout


def test_shutdown_and_malformed_commands(kq, client, start_worker, prefix):
    from kq.control import CHANNEL
    from kq.transport import Envelope

    worker = start_worker("-P", "threads", "-c", "2", name=prefix)
    name = f"{prefix}0@test"
    for body in (b"\x00\xffgarbage", b'{"method": "ping"}', b'{"method": "ping", "arguments": 3}'):
        client.broadcast(CHANNEL, Envelope(body, "application/json"))
    assert list(replies(kq("inspect", "ping", "-d", name, "--timeout", "10", "--json"))) == [name]
    assert worker.process.poll() is None
    assert "malformed control command" in worker.output()
    bad = kq("control", "autoscale", "1", "5", "-d", name, "--timeout", "10")
    assert bad.returncode == 1 and "min <= max" in bad.stdout
    done = kq("control", "shutdown", "-d", name, "--timeout", "10")
    assert done.returncode == 0 and "warm shutdown" in done.stdout
    assert worker.wait(30) == 0
