"""``kq worker --metrics-port``: /metrics parsed as Prometheus parses it, /healthz, /readyz.

Workers run as real processes on the real Redis; results go to the test's SQLite file. The
restart test stops Redis, so it holds the server lock alone (see tests/e2e/test_redis.py).
"""

import pathlib
import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kq import App
from kq.exceptions import MaxRetriesExceededError
from kq.testing.servers import hold
from kq.worker import Worker
from kq.worker.probes import health

pytestmark = [pytest.mark.slow, pytest.mark.serial]


#: How CI and the development machines start Redis (DESIGN.md; as in tests/e2e/test_redis.py).
@pytest.fixture
def broker_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if "restarts_redis" not in request.fixturenames:
        yield request.getfixturevalue("redis_broker")
        return
    with hold("redis", exclusive=True) as (host, port):  # a restart drops every key anyway
        yield {
            "broker_url": f"redis://{host}:{port}/15",
            "broker_transport_options": {"global_keyprefix": f"kqtest-{uuid.uuid4().hex[:12]}:"},
        }


@pytest.fixture
def restarts_redis() -> None:
    """Requested by a test that stops Redis: it then holds the server lock alone."""


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, keyed by name and labels."""
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counts(samples: dict, task: str) -> dict[str, float]:
    return {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "kq_tasks_total" and dict(labels)["task"] == task
    }


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_metrics_count_the_tasks_run(client: App, start_worker, port: int) -> None:
    revoked = str(uuid.uuid4())
    client.revoke(revoked)  # persisted: the worker started below skips it
    start_worker("-P", "threads", "-c", "4", "--metrics-port", str(port), app="retry_app:app")
    # It logs "ready" a moment before it consumes (revokes are loaded in between).
    wait_for(lambda: get(port, "/readyz") == (200, "ok\n"), 10, "/readyz to say yes")
    assert get(port, "/healthz") == (200, "ok\n")
    adds = [client.send_task("retry.add", [n, 1]) for n in range(10)]
    manual = [client.send_task("retry.manual", [f"m{n}"]) for n in range(3)]  # 2 retries, fails
    client.send_task("retry.add", [0, 0], task_id=revoked)
    client.send_task("retry.nowhere")  # not registered: rejected
    assert [r.get(timeout=30) for r in adds] == [n + 1 for n in range(10)]
    assert all(isinstance(r.get(timeout=30, propagate=False), MaxRetriesExceededError) for r in manual)
    zero = dict.fromkeys(
        ("received", "started", "succeeded", "failed", "retried", "revoked", "rejected"), 0.0
    )
    expected = {
        "retry.add": {**zero, "received": 11, "started": 10, "succeeded": 10, "revoked": 1},
        "retry.manual": {**zero, "received": 9, "started": 9, "retried": 6, "failed": 3},
        "retry.nowhere": {**zero, "rejected": 1},
    }
    wait_for(
        lambda: {task: counts(scrape(port), task) for task in expected} == expected,
        10,
        f"counts {expected}, got {scrape(port)}",
    )
    samples = scrape(port)
    for task, ran in (("retry.add", 10), ("retry.manual", 9)):
        assert samples[("kq_task_runtime_seconds_count", frozenset({("task", task)}))] == ran
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (name, labels), value in samples.items()
            if name == "kq_task_runtime_seconds_bucket" and dict(labels)["task"] == task
        )
        assert buckets[-1] == (float("inf"), ran)
        assert [value for _, value in buckets] == sorted(value for _, value in buckets)
    gauges = {name: value for (name, labels), value in samples.items() if not labels}
    assert gauges == {
        "kq_prefetched": 0,
        "kq_active": 0,
        "kq_pool_size": 4,
        "kq_worker_up": 1,
        "kq_broker_connected": 1,
    }
    assert samples[("kq_queue_depth", frozenset({("queue", "celery")}))] == 0
    dashboard = (pathlib.Path(__file__).parents[2] / "docs" / "grafana-kq.json").read_text()
    used = set(re.findall(r"\bkq_[a-z_]+", dashboard))
    assert used and used <= {name for name, _ in samples}, "the dashboard names unknown metrics"


def test_readyz_says_no_during_a_warm_shutdown(client: App, start_worker, port: int) -> None:
    worker = start_worker("-P", "threads", "-c", "2", "--metrics-port", str(port), app="retry_app:app")
    client.send_task("retry.progress", [20, 0.1])  # two seconds of work
    wait_for(lambda: scrape(port)[("kq_active", frozenset())] == 1, 10, "the task to start")
    worker.signal()
    wait_for(lambda: get(port, "/readyz")[0] == 503, 10, "/readyz to say no")
    assert get(port, "/readyz") == (503, "shutting down\n")
    assert get(port, "/healthz") == (200, "ok\n")  # still alive: finishing its task
    assert worker.wait(30) == 0


def test_health_is_starting_until_the_worker_consumes(db_url: str) -> None:
    app = App("idle", broker=db_url, backend=None)
    assert health(Worker(app)) == "worker starting"
    app.close()


def test_healthz_follows_a_redis_restart(restarts_redis, redis_outage, start_worker, port: int) -> None:
    start_worker("-P", "threads", "-c", "2", "--metrics-port", str(port))
    assert get(port, "/healthz") == (200, "ok\n")
    with redis_outage():
        wait_for(lambda: get(port, "/healthz")[0] == 503, 10, "/healthz to turn unhealthy")
        status, body = get(port, "/healthz")
        assert status == 503 and body.startswith("broker connection down for "), body
        assert scrape(port)[("kq_broker_connected", frozenset())] == 0
    wait_for(lambda: get(port, "/healthz") == (200, "ok\n"), 30, "/healthz to be healthy again")
    assert scrape(port)[("kq_broker_connected", frozenset())] == 1
