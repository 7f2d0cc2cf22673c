"""The testing kit's fixtures, and a worker in a thread on the in-process memory broker."""

import time

import pytest

from kq import App, TaskRevoked
from kq.testing.worker import worker_thread


def test_kq_app_and_kq_worker_fixtures(kq_app, request):
    @kq_app.task
    def mul(x, y):
        return x * y

    request.getfixturevalue("kq_worker")  # started after the task is registered
    assert mul.delay(6, 7).get(timeout=30) == 42
    assert kq_app.conf.broker_url.startswith("sqlite:///")


def test_worker_on_memory_broker_runs_through_the_kombu_adapter():
    app = App("mem", broker="memory://", backend="memory://", task_default_queue="kq-thread-test")

    @app.task(acks_late=True)
    def square(x):
        return x * x

    @app.task
    def boom():
        raise KeyError("missing")

    with worker_thread(app, pool="threads", concurrency=2) as worker:
        results = [square.delay(n) for n in range(200)]
        assert [r.get(timeout=30) for r in results] == [n * n for n in range(200)]
        with pytest.raises(KeyError):
            boom.delay().get(timeout=30)
    assert worker.stats.succeeded == 200 and worker.stats.failed == 1
    transport = app.new_transport()
    try:
        assert transport.depth("kq-thread-test") == 0
    finally:
        transport.close()
        app.close()


def test_expired_task_is_not_run_and_reads_revoked(kq_app):
    ran = []

    @kq_app.task
    def record():
        ran.append(1)

    expired = record.apply_async(expires=-1)
    fresh = record.delay()
    with worker_thread(kq_app, pool="solo"):
        with pytest.raises(TaskRevoked, match="expired"):
            expired.get(timeout=30)
        fresh.get(timeout=30)
    assert expired.state == "REVOKED" and ran == [1]


def test_eta_task_waits_until_due(kq_app):
    @kq_app.task
    def stamp():
        return time.time()

    with worker_thread(kq_app, pool="threads", concurrency=2):
        sent_at = time.time()
        result = stamp.apply_async(countdown=1.5)
        assert result.get(timeout=30) >= sent_at + 1.4


def test_rpc_backend_uses_the_apps_rabbitmq_broker():
    from kq.testing.servers import require

    require("rabbitmq")
    app = App(
        "rpc",
        broker="amqp://guest:guest@127.0.0.1:5672//",
        backend="rpc://",
        task_default_queue="kq-rpc-thread-test",
    )

    @app.task
    def add(x, y):
        return x + y

    try:
        with worker_thread(app, pool="threads", concurrency=2):
            assert [add.delay(n, n).get(timeout=30) for n in range(20)] == [2 * n for n in range(20)]
    finally:
        transport = app.new_transport()
        transport.purge("kq-rpc-thread-test")
        transport.close()
        app.close()
