"""1,000 tasks through Amazon SQS (moto's server, kq-sqs) to a real `kq worker` process, results
in SQLite: every value correct, nothing left in the queue; and 300 through a FIFO queue."""

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from kq import App
from kq.result import GroupResult
from kq.testing.aws import REGION, moto_server

pytestmark = pytest.mark.slow

#: Tasks per run: moto serves a FIFO queue's receives about half as fast.
TOTAL = {"standard": 1_000, "fifo": 300}


@pytest.fixture(scope="module")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["standard", "fifo"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def broker_settings(kind: str, aws_endpoint: str) -> dict[str, Any]:
    """The worker gets them as KQ_* variables (JSON for the options), as a user would set them."""
    queue = f"kq-e2e-{uuid.uuid4().hex[:10]}" + (".fifo" if kind == "fifo" else "")
    return {
        "broker_url": "sqs://",
        "task_default_queue": queue,
        "broker_transport_options": {"endpoint_url": aws_endpoint, "region": REGION},
    }


def test_tasks_through_sqs(client: App, start_worker, broker_settings: dict[str, Any], kind: str) -> None:
    total = TOTAL[kind]
    worker = start_worker("-P", "threads", "-c", "8")
    half = total // 2  # one at a time (SendMessage), then in batches (SendMessageBatch)
    sent = [client.send_task("e2e.double", [n]) for n in range(half)]
    sent += client.send_many(
        SimpleNamespace(task="e2e.double", args=[n], kwargs={}, options={}) for n in range(half, total)
    )
    failed = client.send_task("e2e.fail", ["broken on purpose"])
    assert GroupResult(None, sent, app=client).get(timeout=120) == [2 * n for n in range(total)]
    with pytest.raises(ValueError, match="broken on purpose"):
        failed.get(timeout=60)
    assert worker.stop() == 0
    transport = client.new_transport()
    try:
        assert transport.depth(broker_settings["task_default_queue"]) == 0
    finally:
        transport.close()
