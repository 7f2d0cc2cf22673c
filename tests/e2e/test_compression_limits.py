"""Compression and size limits with real `kq worker` processes on Redis and on SQLite.

Compressed tasks (the setting, a task's option, a call's option) run; a zip bomb, an oversized
body, an oversized ``argsrepr`` and a too-deeply nested workflow, published raw as a hostile
client would, are rejected as ``over-limit``, dead-lettered intact and counted, and good tasks
run after each. The worker keeps the default limits (4 MiB, 1,024 characters, 64 levels).
"""

import json
import os
import subprocess
import sys
import uuid
import zlib
from typing import Any

import pytest

from kq import App
from kq.exceptions import EncodeError
from kq.transport import REJECT_REASON_HEADER, Envelope, dead_letter_queue

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.parametrize("broker_settings", ["sqlite", "redis"], indirect=True),
]

MAX_SIZE = 4 * 1024 * 1024  # message_max_size's default
QUEUE = "celery"


@pytest.fixture
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {} if request.param == "sqlite" else request.getfixturevalue("redis_broker")


@pytest.fixture
def transport(client: App):
    transport = client.new_transport()
    yield transport
    transport.close()


@pytest.fixture
def worker_name() -> str:
    return f"z{uuid.uuid4().hex[:6]}-"


def raw(task_id: str, args: list, *, body: bytes | None = None, **headers: Any) -> Envelope:
    """A task message as any client could publish it: valid headers, a JSON body."""
    if body is None:
        body = json.dumps(
            [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
        ).encode()
    return Envelope(
        body=body,
        content_type="application/json",
        headers={
            "lang": "py",
            "task": "e2e.double",
            "id": task_id,
            "root_id": task_id,
            "argsrepr": "(...)",
            "kwargsrepr": "{}",
            **headers,
        },
    )


def linked(levels: int, prefix: str = "cb") -> dict[str, Any]:
    """A callback whose callback's callback ... goes ``levels`` signatures deep; each adds three
    levels of nesting (the signature, its options, its link list). Each doubles its parent's
    result; the innermost, which runs last, has the task id ``<prefix>-1``."""
    sig: dict[str, Any] = {
        "task": "e2e.double",
        "args": [],
        "kwargs": {},
        "options": {"task_id": f"{prefix}-1"},
    }
    for n in range(2, levels + 1):
        sig = {
            "task": "e2e.double",
            "args": [],
            "kwargs": {},
            "options": {"task_id": f"{prefix}-{n}", "link": [sig]},
        }
    return sig


def test_compressed_tasks_run_whichever_way_compression_is_chosen(
    client, db_url, broker_settings, transport, start_worker
):
    zlib_client = App(
        "zlib-client",
        **{"broker_url": db_url, "result_backend": db_url, **broker_settings, "task_compression": "zlib"},
    )

    @client.task(name="e2e.add", compression="bz2")
    def add(x: str, y: str) -> str:
        raise AssertionError("runs on the worker only")

    text = "kq " * 2000
    try:
        sent = {
            "application/x-gzip": zlib_client.send_task("e2e.add", [text, "zlib"]),
            "application/zstd": client.send_task("e2e.add", [text, "zstd"], compression="zstd"),
            "application/x-bz2": add.delay(text, "bz2"),
        }
        # On the wire before any worker runs: compressed, under kombu's content types.
        seen = transport.fetch([QUEUE], 10, 5.0)
        assert {d.envelope.headers["id"]: d.envelope.headers["compression"] for d in seen} == {
            result.id: kind for kind, result in sent.items()
        }
        assert all(len(d.envelope.body) < len(text) // 10 for d in seen)
        for delivery in seen:
            transport.reject(delivery, requeue=True)
        start_worker("-P", "threads", "-c", "2")
        for result, suffix in zip(sent.values(), ["zlib", "zstd", "bz2"], strict=True):
            assert result.get(timeout=30) == text + suffix
            assert result.state == "SUCCESS"
    finally:
        zlib_client.close()


def test_over_limit_messages_are_dead_lettered_counted_and_the_worker_goes_on(
    client, env, transport, start_worker, worker_name, ran
):
    worker = start_worker("-P", "threads", "-c", "2", name=worker_name)
    big = "0" * MAX_SIZE
    bomb_body = zlib.compress(json.dumps([[big], {}, {}]).encode(), 9)
    assert len(bomb_body) < 16 * 1024  # a few KB on the wire, over 4 MiB inflated
    bad = {
        "zip-bomb": raw("zip-bomb", [], body=bomb_body, compression="application/x-gzip"),
        "too-big": raw("too-big", [big]),
        "long-repr": raw("long-repr", [1], argsrepr="x" * 5000),
        "too-deep": raw(
            "too-deep",
            [1],
            body=json.dumps(
                [[1], {}, {"callbacks": [linked(30)], "errbacks": None, "chain": None, "chord": None}]
            ).encode(),
        ),
    }
    for task_id, envelope in bad.items():
        transport.publish(QUEUE, envelope)
        # FIFO: the worker has judged the bad message by the time the good one after it is done.
        assert client.send_task("e2e.add", [task_id, "-ok"]).get(timeout=30) == task_id + "-ok"
    assert worker.process.poll() is None
    log = worker.output()
    for task_id in bad:
        assert f"rejected message {task_id}" in log
    assert not set(bad) & set(ran("ran"))
    assert all(client.AsyncResult(task_id).state == "PENDING" for task_id in bad)

    dead = transport.fetch([dead_letter_queue(QUEUE)], 10, 5.0)
    transport.ack(dead)
    assert sorted(d.envelope.headers["id"] for d in dead) == sorted(bad)
    for delivery in dead:
        envelope, original = delivery.envelope, bad[delivery.envelope.headers["id"]]
        assert envelope.headers[REJECT_REASON_HEADER].startswith("over-limit: ")
        assert envelope.body == original.body  # intact, still compressed where it was

    stats = inspect_stats(env, f"{worker_name}0@test")
    assert stats["rejected_by_reason"] == {"over-limit": len(bad)}
    assert stats["total"]["rejected"] == len(bad)
    assert worker.stop() == 0


def test_a_client_refuses_to_send_a_message_over_the_limit(client, transport):
    with pytest.raises(EncodeError, match="message_max_size"):
        client.send_task("e2e.double", ["0" * MAX_SIZE])
    # A few KB compressed, but workers would refuse it once inflated: refused here too.
    with pytest.raises(EncodeError, match="message_max_size"):
        client.send_task("e2e.double", ["0" * MAX_SIZE], compression="zstd")
    assert transport.depth(QUEUE) == 0


def test_a_deep_workflow_within_the_limit_runs(client, transport, start_worker, ran):
    """The depth limit leaves room: 21 callbacks deep (64 levels, the default limit) all run;
    the rejected workflow above was 30 deep (91 levels)."""
    start_worker("-P", "threads", "-c", "2")
    transport.publish(
        QUEUE,
        raw(
            "within-depth",
            [1],
            body=json.dumps(
                [
                    [1],
                    {},
                    {"callbacks": [linked(21, "within")], "errbacks": None, "chain": None, "chord": None},
                ]
            ).encode(),
        ),
    )
    assert client.AsyncResult("within-depth").get(timeout=30) == 2
    assert client.AsyncResult("within-1").get(timeout=30) == 2**22  # the innermost, last
    assert len(ran("ran")) == 22


def inspect_stats(env: dict[str, str], name: str) -> dict[str, Any]:
    """``kq inspect stats`` of one worker, through the real command line."""
    done = subprocess.run(
        [sys.executable, "-m", "kq", "inspect", "stats", "-d", name, "--timeout", "10", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)[name]["ok"]
