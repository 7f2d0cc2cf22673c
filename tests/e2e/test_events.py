"""Task and worker events (``kq worker -E``, ``task_send_sent_event``) seen by ``kq events`` and
by a subscriber in the test, with real worker processes on the real Redis."""

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kq import App
from kq.cli.events import View, decode
from kq.events import CHANNEL
from kq.exceptions import MaxRetriesExceededError
from kq.transport import Transport

from .conftest import APPS

pytestmark = pytest.mark.slow


@pytest.fixture
def broker_settings(redis_broker: dict[str, Any]) -> dict[str, Any]:
    return redis_broker


@pytest.fixture
def listen(client: App) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """Subscribes now; ``listen(until, timeout)`` returns every event received so far, fetching
    more until ``until(events)`` holds."""
    transport: Transport = client.new_transport()
    queue = transport.subscribe(CHANNEL)
    seen: list[dict[str, Any]] = []

    def collect(until: Callable[[list[dict[str, Any]]], bool], timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not until(seen) and (remaining := deadline - time.monotonic()) > 0:
            deliveries = transport.fetch([queue], 100, min(0.5, remaining))
            if deliveries:
                transport.ack(deliveries)
            seen.extend(event for d in deliveries for event in decode(d.envelope.body))
        return seen

    yield collect
    transport.close()


def types_of(events: list[dict[str, Any]], task_id: str) -> list[str]:
    """The worker's events of a task, in order (the client's task-sent may arrive before or
    after them: they come from another connection)."""
    return [e["type"] for e in events if e.get("uuid") == task_id and e["type"] != "task-sent"]


def test_a_worker_with_events_on_reports_every_task_and_itself(
    client: App, env: dict[str, str], start_worker, listen
) -> None:
    dump = subprocess.Popen(
        [sys.executable, "-m", "kq", "events", "--dump", "--duration", "20"],
        env={**os.environ, **env},
        cwd=str(APPS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in dump.stderr.readline()
        client.configure(task_send_sent_event=True)
        revoked = str(uuid.uuid4())
        client.revoke(revoked)  # persisted: the worker skips it
        worker = start_worker("-P", "threads", "-c", "2", "-E", app="retry_app:app")
        ok = client.send_task("retry.add", [2, 3])
        retried = client.send_task("retry.manual", ["k"])  # retries twice, then fails
        rejected = client.send_task("retry.nowhere")
        client.send_task("retry.add", [0, 0], task_id=revoked)
        assert ok.get(timeout=30) == 5
        assert isinstance(retried.get(timeout=30, propagate=False), MaxRetriesExceededError)
        events = listen(
            lambda seen: (
                types_of(seen, rejected.id) == ["task-rejected"]
                and "worker-heartbeat" in [e["type"] for e in seen]
                and types_of(seen, retried.id)[-1:] == ["task-failed"]
            ),
            20,
        )
        lines = []  # what `kq events --dump` printed, up to the last event the test waits for
        while not lines or (lines[-1]["type"], lines[-1].get("uuid")) != ("task-failed", retried.id):
            line = dump.stdout.readline()  # it exits after --duration at the latest
            assert line, "kq events --dump ended before the retried task failed"
            lines.append(json.loads(line))
        worker.signal()
        assert worker.wait(30) == 0
        events = listen(lambda seen: seen[-1]["type"] == "worker-offline", 10)
    finally:
        dump.terminate()
        dump.communicate(timeout=10)
    sent = [e["uuid"] for e in events if e["type"] == "task-sent"]
    assert sorted(sent) == sorted([ok.id, retried.id, rejected.id, revoked])  # the worker sends no task-sent
    assert types_of(events, ok.id) == ["task-received", "task-started", "task-succeeded"]
    assert types_of(events, revoked) == ["task-received", "task-revoked"]
    # A retry's message may be received before the worker reports the run that sent it.
    runs = types_of(events, retried.id)
    assert runs[:2] == ["task-received", "task-started"] and runs[-1] == "task-failed"
    assert Counter(runs) == {"task-received": 3, "task-started": 3, "task-retried": 2, "task-failed": 1}
    by_type = {e["type"]: e for e in events if e.get("uuid") in (ok.id, retried.id)}
    assert by_type["task-received"]["name"] in ("retry.add", "retry.manual")
    assert by_type["task-succeeded"]["runtime"] >= 0
    assert "MaxRetriesExceededError" in by_type["task-failed"]["exception"]
    assert "KeyError" in by_type["task-retried"]["exception"]
    assert by_type["task-sent"]["queue"] == "celery"

    worker_events = [e for e in events if e["hostname"] == "w0@test"]
    assert worker_events[0]["type"] == "worker-online"
    assert worker_events[0]["sw_ident"] == "kq"
    assert worker_events[-1]["type"] == "worker-offline" and worker_events[-1]["processed"] == 3
    heartbeat = next(e for e in worker_events if e["type"] == "worker-heartbeat")
    assert heartbeat["freq"] == 2.0 and {"active", "processed"} <= heartbeat.keys()
    for sender in {e["hostname"] for e in events}:  # the worker, and the client's task-sent
        mine = [e for e in events if e["hostname"] == sender]
        clocks = [e["clock"] for e in mine]
        assert clocks == sorted(clocks) and len(set(clocks)) == len(clocks), sender
        assert all(
            isinstance(e["timestamp"], float)
            and isinstance(e["utcoffset"], int)
            and isinstance(e["pid"], int)
            for e in mine
        )

    dumped = [e["clock"] for e in lines if e["hostname"] == "w0@test"]  # the same, in order
    assert dumped == [e["clock"] for e in events if e["hostname"] == "w0@test"][: len(dumped)]
    assert all("local_received" in e for e in lines)
    view = View()
    for event in lines:
        view.add(event, time.time())
    text = view.render(time.time())
    assert "w0@test" in text and "online" in text and retried.id in text


def test_a_worker_without_events_sends_none(client: App, start_worker, listen) -> None:
    start_worker("-P", "threads", "-c", "2", app="retry_app:app")
    assert client.send_task("retry.add", [1, 1]).get(timeout=30) == 2
    # Two heartbeat intervals: a worker with events on would have sent at least one.
    assert listen(lambda seen: False, 4.5) == []


def test_the_view_marks_a_worker_offline_after_three_missed_heartbeats() -> None:
    view = View()
    view.add({"type": "worker-heartbeat", "hostname": "w@x", "active": 1, "processed": 7}, 100.0)
    view.add({"type": "task-failed", "hostname": "w@x", "uuid": "id1", "exception": "E: no"}, 100.0)
    assert "w@x" in view.render(105.0) and "online" in view.render(105.0)
    assert "OFFLINE" in view.render(107.0)
    assert "id1  E: no" in view.render(107.0) and "failed 1" in view.render(107.0)
