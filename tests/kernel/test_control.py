"""Remote control in one process: a worker thread on the in-process memory:// broker answers
commands sent with ``kq.control.broadcast`` (the e2e tests do the same with real brokers); and
the pieces it changes (a throttle's rates) or reads (the queues routes name)."""

import json
import threading
import time
import uuid

import pytest

from kq import App
from kq.control import CHANNEL, CONTENT_TYPE, Command, Reply, broadcast
from kq.pool import Job
from kq.protocol import TaskMessage
from kq.ratelimit import Throttle, parse_rate
from kq.routing import Router
from kq.testing.worker import worker_thread
from kq.transport import Envelope


def test_command_round_trip_and_malformed_ones():
    command = Command("rate_limit", {"task_name": "t", "rate_limit": "2/s"}, ("a@h",))
    assert Command.decode(command.encode()) == command
    assert command.is_for("a@h") and not command.is_for("b@h")
    assert Command("ping").is_for("anyone")
    reply = Reply("id", "a@h", {"ok": "pong"})
    assert Reply.decode(reply.encode()) == reply
    good = json.loads(command.encode())
    for bad in (
        b"not json",
        b"[]",
        json.dumps({**good, "method": 3}).encode(),
        json.dumps({**good, "destination": "a@h"}).encode(),
        json.dumps({**good, "reply_to": "kq.revoke"}).encode(),
        json.dumps({key: value for key, value in good.items() if key != "id"}).encode(),
    ):
        with pytest.raises((ValueError, KeyError, TypeError)):
            Command.decode(bad)


@pytest.fixture
def release():
    """Set it to let ``ctl.wait`` return."""
    return threading.Event()


@pytest.fixture
def app(release):
    app = App(
        "ctl", broker="memory://", backend="memory://", task_default_queue=f"ctl-{uuid.uuid4().hex[:8]}"
    )

    @app.task(name="ctl.wait")
    def wait(seconds: float) -> None:
        release.wait(seconds)

    @app.task(name="ctl.add")
    def add(x: int, y: int) -> int:
        return x + y

    yield app
    release.set()
    app.close()


def ask(app, method, name, **arguments):
    replies = broadcast(app, method, arguments, destination=[name], timeout=5)
    assert list(replies) == [name]
    return replies[name]


def test_inspect_a_worker_thread(app, release):
    name = f"t{uuid.uuid4().hex[:6]}@test"
    with worker_thread(app, pool="threads", concurrency=1, hostname=name) as worker:
        running = app.send_task("ctl.wait", [30])
        later = app.send_task("ctl.add", [1, 2], countdown=60)  # memory:// holds no ETA itself
        waiting = app.send_task("ctl.add", [2, 3])
        deadline = time.monotonic() + 10
        while worker.running_count < 1 or worker.reserved_count < 2:
            assert time.monotonic() < deadline, "the worker did not take the messages"
            time.sleep(0.05)
        assert ask(app, "ping", name)["ok"]["pong"] is True
        (active,) = ask(app, "active", name)["ok"]
        assert active["id"] == running.id and active["name"] == "ctl.wait"
        assert active["args"] == "[30]" or active["args"] == "(30,)"
        assert active["started"] <= time.time()
        assert [job["id"] for job in ask(app, "reserved", name)["ok"]] == [waiting.id]
        (scheduled,) = ask(app, "scheduled", name)["ok"]
        assert scheduled["id"] == later.id and "eta" in scheduled
        assert {"ctl.wait", "ctl.add"} <= set(ask(app, "registered", name)["ok"])
        stats = ask(app, "stats", name)["ok"]
        assert stats["pool"]["name"] == "threads" and stats["pool"]["concurrency"] == 1
        assert stats["total"]["received"] == 3 and stats["running"] == 1
        assert stats["broker"] == "memory://"
        assert stats["rate_limits"] == {}
        assert ask(app, "active_queues", name)["ok"] == [{"name": app.conf.task_default_queue}]
        assert "unknown command" in ask(app, "nosuch", name)["error"]
        release.set()


def test_control_a_worker_thread(app):
    name = f"t{uuid.uuid4().hex[:6]}@test"
    with worker_thread(app, pool="threads", concurrency=2, hostname=name) as worker:
        # Malformed broadcasts are ignored; the worker still answers.
        app.broadcast(CHANNEL, Envelope(b"\xff not json", CONTENT_TYPE))
        app.broadcast(CHANNEL, Envelope(b'{"method": "ping"}', CONTENT_TYPE))
        assert "pong" in ask(app, "ping", name)["ok"]
        assert "error" in ask(app, "rate_limit", name, task_name="nosuch", rate_limit="1/s")
        assert "error" in ask(app, "rate_limit", name, task_name="ctl.add", rate_limit="fast")
        assert "error" in ask(app, "pool_grow", name, n=0)
        assert "error" in ask(app, "time_limit", name, task_name="ctl.add", hard=5)  # threads: soft only
        assert "ok" in ask(app, "time_limit", name, task_name="ctl.add", soft=5)
        assert "ok" in ask(app, "pool_grow", name, n=2)
        assert "ok" in ask(app, "add_consumer", name, queue="extra")
        assert "error" in ask(app, "cancel_consumer", name, queue="nosuch")
        deadline = time.monotonic() + 5
        while worker.concurrency != 4 or "extra" not in worker.queues:
            assert time.monotonic() < deadline, "the changes were not applied"
            time.sleep(0.05)
        assert app.tasks["ctl.add"].soft_time_limit == 5
        assert "ok" in ask(app, "rate_limit", name, task_name="ctl.add", rate_limit="100/m")
        deadline = time.monotonic() + 5
        while ask(app, "stats", name)["ok"]["rate_limits"] != {"ctl.add": "100/m"}:
            assert time.monotonic() < deadline, "the rate limit was not applied"
            time.sleep(0.05)
        assert "ok" in ask(app, "rate_limit", name, task_name="ctl.add", rate_limit="none")
        assert app.send_task("ctl.add", [4, 5], queue="extra").get(timeout=10) == 9
        assert "ok" in ask(app, "pool_shrink", name, n=1)
        assert "ok" in ask(app, "cancel_consumer", name, queue="extra")
        assert "ok" in ask(app, "shutdown", name)
        deadline = time.monotonic() + 10
        while not worker.stopping:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_throttle_rate_can_be_set_removed_and_read_while_running():
    now = [0.0]
    throttle = Throttle({}, clock=lambda: now[0])
    jobs = [Job(TaskMessage(id=f"t-{n}", task="t"), "celery", ticket=n) for n in range(3)]
    throttle.set_rate("t", parse_rate("2/s"))
    assert all(throttle.hold(j) for j in jobs)
    assert throttle.held() == jobs
    assert throttle.release(10) == jobs[:1]  # then one each half second
    now[0] = 0.49
    assert throttle.release(10) == []
    throttle.set_rate("t", None)  # no limit any more: the held ones go at once
    assert throttle.release(10) == jobs[1:] and len(throttle) == 0
    assert not throttle.hold(jobs[0])


def test_router_names_the_queues_kq_queues_counts():
    router = Router(
        {"a.*": "billing", "b": {"queue": "fast", "priority": 5}, "c": {"priority": 1}},
        default_queue="celery",
    )
    assert router.queues() == ["celery", "billing", "fast"]
    assert Router(None, default_queue="jobs").queues() == ["jobs"]


def test_a_solo_worker_cannot_be_resized(app):
    name = f"t{uuid.uuid4().hex[:6]}@test"
    with worker_thread(app, pool="solo", hostname=name):
        for method, arguments in (
            ("pool_grow", {"n": 1}),
            ("pool_shrink", {}),
            ("autoscale", {"max": 4, "min": 1}),
        ):
            assert ask(app, method, name, **arguments) == {"error": "the solo pool cannot be resized"}
        assert "missing" in ask(app, "add_consumer", name)["error"]  # no queue given
