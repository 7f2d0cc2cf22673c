"""kq-dynamodb's tests run against moto's DynamoDB, started once per session on a free port."""

from __future__ import annotations

import uuid
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
def table(aws_endpoint: str) -> Iterator[str]:
    """A table name of the test's own; the backend creates it, the test deletes it."""
    name = f"kq-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = boto3.client("dynamodb", endpoint_url=aws_endpoint, region_name=REGION)
    try:
        client.delete_table(TableName=name)
    except client.exceptions.ResourceNotFoundException:
        pass


@pytest.fixture
def dynamodb_options(aws_endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": aws_endpoint}
