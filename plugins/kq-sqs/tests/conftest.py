"""kq-sqs's tests run against moto's SQS, started once per session on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from kq.testing.aws import REGION, moto_server


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def sqs_options(aws_endpoint: str) -> dict[str, Any]:
    """Broker options for moto (the credentials come from the environment moto_server set)."""
    return {"endpoint_url": aws_endpoint, "region": REGION}


@pytest.fixture
def sqs(aws_endpoint: str) -> Iterator[Any]:
    """A plain boto3 client, for looking at the queues behind the transport's back."""
    client = boto3.client("sqs", endpoint_url=aws_endpoint, region_name=REGION)
    yield client
    client.close()
