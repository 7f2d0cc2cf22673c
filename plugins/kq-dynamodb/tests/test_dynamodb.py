"""What is special to kq-dynamodb, against moto's DynamoDB: the URL, the table it creates (with
TTL on ``expires_at``), the item layout, errors."""

from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import pytest

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.plugins import get_plugins
from kq.testing.aws import REGION
from kq.testing.imports import imported_on_load
from kq.testing.servers import free_port
from kq_dynamodb.backend import DEFAULT_TABLE, DynamoDBBackend, parse_url


def make(url: str, **options: Any) -> DynamoDBBackend:
    backend = get_plugins().backend_for(url).factory(url, options)
    assert isinstance(backend, DynamoDBBackend)
    return backend


@pytest.fixture
def db(aws_endpoint: str) -> Any:
    client = boto3.client("dynamodb", endpoint_url=aws_endpoint, region_name=REGION)
    yield client
    client.close()


def test_loading_the_plugin_does_not_import_boto3() -> None:
    assert imported_on_load("kq_dynamodb.backend", "boto3") == []


def test_url_forms() -> None:
    assert parse_url("dynamodb://eu-west-1/results") == ("eu-west-1", "results")
    assert parse_url("dynamodb:///results") == (None, "results")
    assert parse_url("dynamodb://") == (None, DEFAULT_TABLE)
    for bad in ("dynamodb://key:secret@eu-west-1/t", "dynamodb://eu-west-1/t?read=5", "dynamodb://r/a b"):
        with pytest.raises(ConfigurationError):
            parse_url(bad)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="table_name"):
        make(f"dynamodb://{REGION}/t", table_name="x")


def test_the_table_is_made_with_ttl_on_expires_at(table: str, dynamodb_options: dict, db: Any) -> None:
    backend = make(f"dynamodb://{REGION}/{table}", **dynamodb_options)
    backend.store(StoredResult("t1", "SUCCESS", b'{"result": 1}'), ttl=60)
    described = db.describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = db.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    assert make(f"dynamodb://{REGION}/{table}", **dynamodb_options).get("t1").payload == b'{"result": 1}'


def test_a_missing_table_without_create_table_is_a_configuration_error(
    table: str, dynamodb_options: dict
) -> None:
    backend = make(f"dynamodb://{REGION}/{table}", create_table=False, **dynamodb_options)
    with pytest.raises(ConfigurationError, match="does not exist"):
        backend.get("t1")


def test_items_carry_state_payload_and_expiry(table: str, dynamodb_options: dict, db: Any) -> None:
    backend = make(f"dynamodb://{REGION}/{table}", key_prefix="app1:", **dynamodb_options)
    before = time.time()
    backend.store_many(
        [StoredResult("a", "SUCCESS", b"\x00\x01"), StoredResult("b", "FAILURE", b"")], ttl=100
    )
    backend.store(StoredResult("c", "STARTED", b"c"), ttl=None)
    item = db.get_item(TableName=table, Key={"id": {"S": "app1:celery-task-meta-a"}})["Item"]
    assert item["state"] == {"S": "SUCCESS"} and item["payload"] == {"B": b"\x00\x01"}
    assert before + 100 <= float(item["expires_at"]["N"]) <= time.time() + 100
    kept = db.get_item(TableName=table, Key={"id": {"S": "app1:celery-task-meta-c"}})["Item"]
    assert "expires_at" not in kept
    assert backend.incr("chord-1", 3) == 3
    counter = db.get_item(TableName=table, Key={"id": {"S": "app1:kq-counter-chord-1"}})["Item"]
    assert counter["value"] == {"N": "3"}
    assert backend.claim("unique-1", "task-9", 60) is None
    claim = db.get_item(TableName=table, Key={"id": {"S": "app1:kq-claim-unique-1"}})["Item"]
    assert claim["holder"] == {"S": "task-9"}


def test_store_many_keeps_the_last_of_repeated_ids(table: str, dynamodb_options: dict) -> None:
    backend = make(f"dynamodb://{REGION}/{table}", **dynamodb_options)
    task_id = uuid.uuid4().hex
    backend.store_many([StoredResult(task_id, "STARTED", b"1"), StoredResult(task_id, "SUCCESS", b"2")], 60)
    assert backend.get(task_id) == StoredResult(task_id, "SUCCESS", b"2")


def test_an_unreachable_endpoint_is_backend_unavailable() -> None:
    backend = make(
        f"dynamodb://{REGION}/t-unreachable",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        client_config={"connect_timeout": 1, "retries": {"total_max_attempts": 1}},
    )
    with pytest.raises(BackendUnavailable, match="127.0.0.1"):
        backend.get("t1")


def test_a_table_without_ttl_is_reported(
    table: str, dynamodb_options: dict, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    backend = make(f"dynamodb://{REGION}/{table}", create_table=False, **dynamodb_options)
    with caplog.at_level("WARNING", logger="kq.dynamodb"):
        assert backend.get("t1") is None
    assert "no TTL on 'expires_at'" in caplog.text
