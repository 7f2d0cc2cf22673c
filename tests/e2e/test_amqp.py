"""Real `kq worker` processes on RabbitMQ (kq-amqp) with rpc:// results: 10,000 tasks all
correct, and a RabbitMQ restart in the middle of a drain that loses no acks_late task."""

import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from kq import App
from kq.testing.servers import reachable

pytestmark = [pytest.mark.slow, pytest.mark.serial]

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BACKEND = "rpc+" + BROKER


@pytest.fixture
def env(env: dict[str, str], amqp_queue: str) -> dict[str, str]:
    return {**env, "KQ_BROKER_URL": BROKER, "KQ_RESULT_BACKEND": BACKEND, "KQ_TASK_DEFAULT_QUEUE": amqp_queue}


@pytest.fixture
def client(amqp_queue: str) -> Iterator[App]:
    app = App("client", broker=BROKER, backend=BACKEND, task_default_queue=amqp_queue)
    yield app
    app.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=300)


@pytest.mark.timeout(900)
def test_10000_tasks_through_a_worker_with_rpc_results(client, start_worker, ran):
    total = 10_000
    worker = start_worker("-P", "threads", "-c", "4")
    sent = [client.send_task("e2e.double", [n]) for n in range(total)]
    values = [result.get(timeout=300) for result in sent]
    assert values == [2 * n for n in range(total)]
    assert worker.stop() == 0
    ids = ran("ran")
    assert len(ids) == total, f"{len(ids) - len(set(ids))} duplicate runs"
    assert set(ids) == {result.id for result in sent}


@pytest.mark.timeout(900)
def test_a_rabbitmq_restart_mid_drain_loses_no_acks_late_task(client, start_worker, ran, amqp_queue):
    total = 5_000
    # e2e.slow is acks_late; 10 ms each keeps 4 threads busy for 12 s or more.
    ids = {client.send_task("e2e.slow", [0.01]).id for _ in range(total)}
    worker = start_worker("-P", "threads", "-c", "4")
    wait_until(lambda: len(set(ran("finished"))) >= 300, 300, "300 tasks finished")
    try:
        rabbitmqctl("stop_app")
        finished_while_down = len(set(ran("finished")))
        time.sleep(2)
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
    wait_until(lambda: reachable("127.0.0.1", 5672), 120, "RabbitMQ listening again")
    assert finished_while_down < total, "the drain ended before RabbitMQ stopped"

    wait_until(lambda: ids <= set(ran("finished")), 600, "every task finished at least once")
    output = worker.output()
    assert worker.process.poll() is None
    assert "broker connection lost" in output and "broker connection restored" in output
    # Still consuming, and rpc results flow again: the client declared its reply queue anew
    # (RabbitMQ deleted it with the connection) and the worker's result sender reconnected.
    assert client.send_task("e2e.add", [2, 3]).get(timeout=120) == 5
    transport = client.new_transport()
    try:
        assert transport.depth(amqp_queue) == 0
    finally:
        transport.close()
    assert worker.stop() == 0
    assert set(ran("finished")) == ids
