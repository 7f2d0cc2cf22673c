"""1,000 tasks through a real `kq worker` process (SQLite broker) with results in S3 (kq-s3) and
in DynamoDB (kq-dynamodb), both on moto's server: every value correct, every result stored
where the backend says, the failure too."""

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from kq import App
from kq.result import GroupResult
from kq.testing.aws import REGION, moto_server

pytestmark = pytest.mark.slow

TOTAL = 1_000


@pytest.fixture(scope="module")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["s3", "dynamodb"])
def results(request: pytest.FixtureRequest, aws_endpoint: str) -> tuple[str, str, dict[str, Any]]:
    """``(kind, backend URL, options)``; a bucket or table of the test's own (moto forgets it)."""
    name = f"kq-e2e-{uuid.uuid4().hex[:10]}"
    if request.param == "s3":
        return "s3", f"s3://{name}/results", {"endpoint_url": aws_endpoint, "create_bucket": True}
    return "dynamodb", f"dynamodb://{REGION}/{name}", {"endpoint_url": aws_endpoint}


@pytest.fixture
def env(env: dict[str, str], results: tuple[str, str, dict[str, Any]]) -> dict[str, str]:
    _, url, options = results
    return {**env, "KQ_RESULT_BACKEND": url, "KQ_RESULT_BACKEND_OPTIONS": json.dumps(options)}


@pytest.fixture
def client(db_url: str, results: tuple[str, str, dict[str, Any]]) -> Iterator[App]:
    _, url, options = results
    app = App("client", broker=db_url, backend=url, result_backend_options=options)
    yield app
    app.close()


def stored(kind: str, url: str, endpoint: str) -> int:
    """How many results the store holds, counted behind the backend's back."""
    name = url.split("/")[2] if kind == "s3" else url.rsplit("/", 1)[1]
    if kind == "s3":
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix="results/")
        return sum(page.get("KeyCount", 0) for page in pages)
    db = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    # Counters share the table (a worker reads the revoke sequence when it starts).
    pages = db.get_paginator("scan").paginate(
        TableName=name,
        Select="COUNT",
        FilterExpression="begins_with(id, :results)",
        ExpressionAttributeValues={":results": {"S": "celery-task-meta-"}},
    )
    return sum(page["Count"] for page in pages)


def test_1000_tasks_with_results_in_aws(client: App, start_worker, results, aws_endpoint: str) -> None:
    kind, url, _ = results
    sent = client.send_many(
        SimpleNamespace(task="e2e.double", args=[n], kwargs={}, options={}) for n in range(TOTAL)
    )
    failed = client.send_task("e2e.fail", ["broken on purpose"])
    worker = start_worker("-P", "threads", "-c", "8")
    assert GroupResult(None, sent, app=client).get(timeout=120) == [2 * n for n in range(TOTAL)]
    with pytest.raises(ValueError, match="broken on purpose"):
        failed.get(timeout=60)
    assert worker.stop() == 0
    assert stored(kind, url, aws_endpoint) == TOTAL + 1
