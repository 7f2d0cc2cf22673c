"""kq-redis end to end: real `kq worker` processes and an in-thread worker on a real Redis.

Every test runs in database 15 under a key prefix of its own (kombu's ``global_keyprefix``,
passed through ``broker_transport_options``/``result_backend_options``), so runs sharing the
server do not meet; the prefix's keys are deleted afterwards. Every test holds a lock on the
server shared with other test processes (plugins/kq-redis/tests/conftest.py takes it too),
and the restart test holds it alone, so that it never pulls Redis from under another run.
"""

import bisect
import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from kq import App
from kq.testing.servers import hold
from kq.testing.worker import worker_thread

pytestmark = [pytest.mark.slow, pytest.mark.serial]


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with hold("redis", exclusive="restarts_redis" in request.fixturenames) as (host, port):
        yield f"redis://{host}:{port}/15"


@pytest.fixture
def restarts_redis(db_url: str) -> None:
    """Requested by a test that stops Redis: it then holds the server lock alone."""


@pytest.fixture
def options(redis_prefix: str) -> dict[str, dict[str, str]]:
    return {
        "broker_transport_options": {"global_keyprefix": redis_prefix},
        "result_backend_options": {"global_keyprefix": redis_prefix},
    }


@pytest.fixture
def env(env: dict[str, str], options: dict[str, dict[str, str]]) -> dict[str, str]:
    return {
        **env,
        "KQ_BROKER_TRANSPORT_OPTIONS": json.dumps(options["broker_transport_options"]),
        "KQ_RESULT_BACKEND_OPTIONS": json.dumps(options["result_backend_options"]),
    }


@pytest.fixture
def client(db_url: str, options: dict[str, dict[str, str]]) -> Iterator[App]:
    app = App("client", broker=db_url, backend=db_url, **options)
    yield app
    app.close()


def test_10000_tasks_through_a_worker_process(client, start_worker, ran):
    total = 10_000
    worker = start_worker("-P", "threads", "-c", "8")
    sent = [client.send_task("e2e.double", [n]) for n in range(total)]
    assert [result.get(timeout=300) for result in sent] == [2 * n for n in range(total)]
    assert worker.stop() == 0, worker.output()
    ids = ran("ran")
    assert len(ids) == total, f"{len(ids) - len(set(ids))} duplicate runs"
    assert set(ids) == {r.id for r in sent}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_redis_restart_loses_nothing_the_worker_had_taken(
    restarts_redis, redis_outage, client, start_worker, ran, redis_prefix
):
    """Redis is stopped and started (keeping nothing) while a worker drains 5,000 acks_late tasks.

    Redis loses what it holds at shutdown: the messages still waiting in the queue, and the
    worker's leases. The worker's promise is about the rest: every message it had taken (run,
    running, or reserved in its memory) still runs, over the broken connection and a new one.
    So the test snapshots the queue right before the shutdown: whatever is *not* in it had been
    taken by the worker, and must run. What was in it may have been taken in the last moments,
    or lost with Redis; the client republishes, under the same ids, what has not run once the
    worker is idle again, and every task ends up run. Finally the same worker process takes a
    new task, with its result, through the restarted server.
    """
    total = 5_000
    worker = start_worker("-P", "threads", "-c", "8")
    sent = [client.send_task("e2e.slow", [0.01]).id for _ in range(total)]
    wait_for(lambda: len(ran("finished")) >= 1_000, 120, "1,000 tasks to finish")
    with redis.Redis(port=6379, db=15) as server:
        snapshot = server.pipeline(transaction=True)
        for key in (f"{redis_prefix}celery", *(f"{redis_prefix}celery\x06\x16{s}" for s in (3, 6, 9))):
            snapshot.lrange(key, 0, -1)
        snapshot.hlen(f"{redis_prefix}unacked")
        *lists, leased = snapshot.execute()
    waiting = {json.loads(raw)["headers"]["id"] for messages in lists for raw in messages}
    with redis_outage():
        time.sleep(1.5)  # the worker meets the outage: fetch, ack and result store all fail
    assert leased > 0 and 0 < len(waiting) < total  # the restart really came mid-drain
    taken = set(sent) - waiting
    wait_for(lambda: taken <= set(ran("finished")), 120, "every taken task to run")
    previous = -1
    while previous != (previous := len(ran("finished"))):
        time.sleep(2)  # until the worker is idle: nothing left of what it had
    lost = set(sent) - set(ran("finished"))
    assert lost <= waiting, "the worker lost messages it had taken"
    for task_id in lost:
        client.send_task("e2e.slow", [0.01], task_id=task_id)
    wait_for(lambda: set(ran("finished")) >= set(sent), 120, "the republished tasks to run")
    assert worker.process.poll() is None
    assert client.send_task("e2e.add", [2, 3]).get(timeout=60) == 5
    assert worker.stop() == 0, worker.output()


def test_eta_tasks_wait_in_redis_and_run_on_time(db_url, options, redis_prefix):
    """1,000 tasks with a 2 s countdown, sent over about a second: they wait in Redis, the
    worker never holds one before it is due, each runs once, within 250 ms of its due time.

    The checks are made against each task's own due time, so that a slow machine, on which the
    sending takes longer than the countdown, cannot make them fail or pass by accident.
    """
    app = App("eta", broker=db_url, backend=db_url, task_default_queue="eta", **options)
    runs: list[tuple[str, float, float]] = []

    @app.task(bind=True, ignore_result=True)
    def stamp(self):
        runs.append((self.request.id, self.request.eta.timestamp(), time.time()))

    samples: list[tuple[int, float]] = []  # (reserved_count, a time just after reading it)
    server = redis.Redis(port=6379, db=15)
    try:
        with worker_thread(app, pool="threads", concurrency=8) as worker:
            sampling = True

            def sample() -> None:
                while sampling:
                    samples.append((worker.reserved_count, time.time()))
                    time.sleep(0.002)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                sent = []
                for n in range(1_000):
                    sent.append(stamp.apply_async(countdown=2))
                    if n % 100 == 99:
                        time.sleep(0.1)
                delayed, checked_at = server.zcard(f"{redis_prefix}_kq.delayed.eta"), time.time()
                wait_for(lambda: len(runs) >= 1_000, 60, "every delayed task to run")
                time.sleep(0.5)  # a second run of any of them would show up now
            finally:
                sampling = False
                sampler.join()
    finally:
        server.close()
        app.close()
    assert sorted(r[0] for r in runs) == sorted(r.id for r in sent)
    dues = sorted(due for _, due, _ in runs)
    assert delayed >= sum(due > checked_at for due in dues)  # what was not due was in Redis
    assert len(samples) > 100
    for reserved, at in samples:  # never more reserved than were due: none held early
        assert reserved <= bisect.bisect_right(dues, at), f"{reserved} reserved at {at}"
    lateness = sorted(ran_at - due for _, due, ran_at in runs)
    assert lateness[0] >= 0, "a task ran before its eta"
    assert lateness[-1] <= 0.25, f"late by up to {lateness[-1]:.3f} s (median {lateness[500]:.3f})"
