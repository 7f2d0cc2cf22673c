"""kq's worker (in a thread) on RabbitMQ with rpc results: countdowns wait in delay queues,
results come back to the sender, refused messages are dead-lettered."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from kq import App
from kq.testing.contracts.transport import drain
from kq.testing.worker import worker_thread
from kq.transport import REJECT_REASON_HEADER, Envelope


@pytest.fixture
def app(amqp_url: str, queue_name: Callable[[], str]) -> Iterator[App]:
    app = App(
        "kq-amqp-test",
        broker=amqp_url,
        backend="rpc://",
        result_backend_options={"broker_url": amqp_url},
        task_default_queue=queue_name(),
    )
    yield app
    app.close()


def test_countdown_waits_in_the_broker_and_the_result_comes_back(app: App) -> None:
    @app.task
    def stamp() -> float:
        return time.time()

    with worker_thread(app, pool="threads", concurrency=2) as worker:
        sent_at = time.time()
        result = stamp.apply_async(countdown=1.5)
        time.sleep(0.5)
        assert worker.reserved_count == 0  # not held in the worker: still in the delay queue
        assert result.get(timeout=30) >= sent_at + 1.5


def test_a_refused_message_is_dead_lettered_and_the_worker_goes_on(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    queue = app.conf.task_default_queue
    transport = app.new_transport()
    try:
        with worker_thread(app, pool="threads", concurrency=2) as worker:
            transport.publish(
                queue,
                Envelope(
                    body=b"[[], {}, {}]",
                    content_type="application/json",
                    headers={"lang": "py", "task": "no.such.task", "id": "unknown-task"},
                ),
            )
            assert add.delay(2, 3).get(timeout=30) == 5
            assert worker.stats.rejected_by_reason == {"unknown-task": 1}
        [dead] = drain(transport, [f"{queue}.dlq"], 1)
        assert dead.envelope.headers["id"] == "unknown-task"
        reason = dead.envelope.headers[REJECT_REASON_HEADER]
        assert reason == "unknown-task: task 'no.such.task' is not registered here"
    finally:
        transport.close()
