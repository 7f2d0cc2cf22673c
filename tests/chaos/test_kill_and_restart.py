"""Issue 11's must-show on Redis and on RabbitMQ: 20,000 ``acks_late`` tasks while a worker
process or a pool child is killed (``kill -9``) every 2 s and the broker restarts once: no task
is lost, and every repeated run is counted and explained.

Two prefork workers (2 children each) run under a :class:`~.harness.Supervisor` that restarts a
killed worker at once; each kill picks one of the 6 processes at random, so worker processes
(with their connection, reserved messages and unsent acks) and pool children (with the task they
were running) both die. The broker restarts once a third of the tasks have run.

- Redis runs as a server of the test's own with ``appendonly yes`` and ``appendfsync always``:
  kq's messages and leases live in Redis, so they survive a restart only as far as Redis
  persists them (the shared server on 6379 keeps nothing). ``visibility_timeout`` is 10 s, so
  the leases of a killed worker come back quickly.
- RabbitMQ is the shared server, restarted with ``rabbitmqctl stop_app``/``start_app`` while
  the test holds it alone; queues are durable, messages persistent, publishes confirmed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

from kq import App, signature
from kq.testing.servers import delete_amqp_queues, hold

from .harness import Chaos, Ledger, RedisServer, Supervisor, check, explain, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]

TOTAL = 20_000
KILL_EVERY = 2.0
#: Two worker processes of two pool children each: each kill hits one of six processes.
WORKERS = 2
WORKER_ARGS = ("-P", "prefork", "-c", "2", "-l", "info")


@attrs.frozen
class Broker:
    #: The client app's settings; workers get the same through KQ_* variables.
    settings: dict[str, Any]
    #: Stops and starts the broker; returns the (start, end) Unix times of the outage.
    restart: Callable[[], tuple[float, float]]
    #: Messages the broker still holds for the test's queue: ready, delayed or unacked.
    pending: Callable[[], int]

    def env(self) -> dict[str, str]:
        return {
            f"KQ_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in self.settings.items()
        }


def outage(stop: Callable[[], None], start: Callable[[], None]) -> tuple[float, float]:
    began = time.time()
    try:
        stop()
        time.sleep(1)  # down long enough for every worker to meet the outage
    finally:
        start()
    return began, time.time()


def redis_broker(directory: Path, queue: str) -> Iterator[Broker]:
    with RedisServer(directory) as server:
        settings = {
            "broker_url": server.url,
            "task_default_queue": queue,
            "broker_transport_options": {"visibility_timeout": 10},
        }

        def pending() -> int:
            with redis.Redis(port=server.port) as client:
                leased = client.hlen("unacked")
            app = App("chaos-depth", result_backend=None, **settings)
            transport = app.new_transport()
            try:
                return leased + transport.depth(queue)
            finally:
                transport.close()
                app.close()

        yield Broker(settings, lambda: outage(server.stop, server.start), pending)


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=300
    ).stdout


def rabbitmq_broker(queue: str) -> Iterator[Broker]:
    with hold("rabbitmq", exclusive=True) as (host, port):
        settings = {"broker_url": f"amqp://guest:guest@{host}:{port}//", "task_default_queue": queue}

        def start() -> None:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")

        def pending() -> int:
            for line in rabbitmqctl(
                "list_queues", "-q", "--no-table-headers", "name", "messages"
            ).splitlines():
                name, _, messages = line.partition("\t")
                if name == queue:
                    return int(messages)
            return 0

        try:
            yield Broker(settings, lambda: outage(lambda: rabbitmqctl("stop_app"), start), pending)
        finally:
            delete_amqp_queues(queue, host=host, port=port)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    queue = f"kq-chaos-{uuid.uuid4().hex[:10]}"
    if request.param == "redis":
        (tmp_path / "redis").mkdir()
        yield from redis_broker(tmp_path / "redis", queue)
    else:
        yield from rabbitmq_broker(queue)


def publish(client: App, total: int, batch: int = 1_000) -> list[str]:
    ids: list[str] = []
    for start in range(0, total, batch):
        calls = [signature("chaos.record", app=client) for _ in range(min(batch, total - start))]
        ids.extend(result.id for result in client.send_many(calls))
    return ids


@pytest.mark.timeout(600)
def test_no_task_lost_with_kills_every_2s_and_a_broker_restart(
    broker: Broker, ledger: Ledger, tmp_path: Path
) -> None:
    began = time.monotonic()
    client = App("chaos-client", result_backend=None, **broker.settings)
    try:
        ids = publish(client, TOTAL)
    finally:
        client.close()
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    with Supervisor(
        "chaos_app:app",
        [*WORKER_ARGS],
        {**broker.env(), **ledger.env(), "KQ_RESULT_BACKEND": "none"},
        tmp_path,
        processes=WORKERS,
    ) as workers:
        with Chaos() as chaos:
            chaos.every(KILL_EVERY, "kill", lambda: workers.kill_random(rng))
            wait_until(lambda: ledger.distinct() >= TOTAL // 3, 120, "a third of the tasks to run")
            restart = broker.restart()
            wait_until(lambda: ledger.distinct() == TOTAL, 120, "every task to run", every=0.5)
        # The faults have stopped; what the broker still holds (leases of killed workers,
        # unacked repeats) runs now, so that every repeat is counted.
        wait_until(lambda: broker.pending() == 0, 60, "the broker to hold no message", every=0.5)
    verdict = check(ids, ledger.runs())
    reasons = explain(verdict, workers.killed, [restart])
    roles = Counter(role for _, _, role in workers.kills)
    repeats = {reason: len(pairs) for reason, pairs in reasons.items()}
    print(
        f"\nchaos summary: broker={broker.settings['broker_url'].split(':')[0]} tasks={TOTAL} "
        f"kills={len(workers.kills)} ({dict(roles)}) worker restarts={workers.restarts} "
        f"broker restarts=1 lost={len(verdict.lost)} duplicates={len(verdict.duplicates)} "
        f"(repeated runs: {repeats}) wall={time.monotonic() - began:.1f}s seed={seed}"
    )
    assert not verdict.lost, f"{len(verdict.lost)} tasks never ran, e.g. {sorted(verdict.lost)[:5]}"
    assert workers.kills, "the tasks all ran before the first kill"
    assert workers.restarts == roles["worker"], "a worker process died without being killed"
    # Every repeat is a redelivery the faults caused: none comes from nowhere.
    not_flagged = [
        runs for runs in verdict.duplicates.values() if not all(run.redelivered for run in runs[1:])
    ]
    assert not not_flagged, f"repeated runs not flagged redelivered: {not_flagged[:3]}"
    unexplained = [
        (pair, [workers.killed.get(run.pid) for run in pair]) for pair in reasons.get("unexplained", [])
    ]
    assert not unexplained, (
        f"repeats no fault explains (runs, their processes' deaths): {unexplained}; "
        f"kills: {workers.kills}, restart: {restart}"
    )
