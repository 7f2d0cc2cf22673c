"""kq-s3's tests run against moto's S3, started once per session on a free port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from kq.testing.aws import moto_server


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(aws_endpoint: str) -> Any:
    """A plain boto3 client, for looking at the bucket behind the backend's back."""
    client = boto3.client("s3", endpoint_url=aws_endpoint)
    yield client
    client.close()


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A bucket of the test's own, emptied and deleted afterwards."""
    name = f"kq-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def s3_options(aws_endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": aws_endpoint}
