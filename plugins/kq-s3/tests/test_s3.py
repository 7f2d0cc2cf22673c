"""What is special to kq-s3, against moto's S3: the URL, the object layout (the payload as the
body, state and expiry as metadata), cleanup of expired results, the bucket, errors."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.plugins import get_plugins
from kq.testing.imports import imported_on_load
from kq.testing.servers import free_port
from kq_s3.backend import S3Backend, parse_url


def make(url: str, **options: Any) -> S3Backend:
    backend = get_plugins().backend_for(url).factory(url, options)
    assert isinstance(backend, S3Backend)
    return backend


def test_loading_the_plugin_does_not_import_boto3() -> None:
    assert imported_on_load("kq_s3.backend", "boto3") == []


def test_url_forms() -> None:
    assert parse_url("s3://bucket/some/prefix/") == ("bucket", "some/prefix/")
    assert parse_url("s3://bucket") == ("bucket", "")
    for bad in ("s3:///prefix", "s3://key:secret@bucket/p", "s3://bucket/p?region=x"):
        with pytest.raises(ConfigurationError):
            parse_url(bad)
    with pytest.raises(ConfigurationError, match="unknown s3:// result_backend_options option"):
        make("s3://bucket", bucket="other")


def test_the_object_is_the_payload_with_state_and_expiry_as_metadata(
    bucket: str, s3_options: dict, s3: Any
) -> None:
    backend = make(f"s3://{bucket}/kq/results", key_prefix="app1-", **s3_options)
    before = time.time()
    backend.store(StoredResult("t1", "SUCCESS", b'{"status": "SUCCESS"}'), ttl=100)
    found = s3.get_object(Bucket=bucket, Key="kq/results/app1-celery-task-meta-t1")
    assert found["Body"].read() == b'{"status": "SUCCESS"}'
    assert found["Metadata"]["kq-state"] == "SUCCESS"
    assert before + 100 <= float(found["Metadata"]["kq-expires-at"]) <= time.time() + 100


def test_an_object_kq_did_not_write_reads_as_missing(bucket: str, s3_options: dict, s3: Any) -> None:
    s3.put_object(Bucket=bucket, Key="celery-task-meta-stranger", Body=b"{}")
    assert make(f"s3://{bucket}", **s3_options).get("stranger") is None


def test_cleanup_deletes_expired_results_under_its_prefix_only(
    bucket: str, s3_options: dict, s3: Any
) -> None:
    backend = make(f"s3://{bucket}/results", **s3_options)
    backend.store_many([StoredResult(f"old{n}", "SUCCESS", b"x") for n in range(3)], ttl=1)
    backend.store(StoredResult("kept", "SUCCESS", b"x"), ttl=None)
    backend.store(StoredResult("young", "SUCCESS", b"x"), ttl=600)
    s3.put_object(Bucket=bucket, Key="results/celery-task-meta-foreign", Body=b"{}")
    make(f"s3://{bucket}/other", **s3_options).store(StoredResult("elsewhere", "SUCCESS", b"x"), ttl=1)
    time.sleep(1.1)
    assert backend.cleanup() == 3
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "other/celery-task-meta-elsewhere",
        "results/celery-task-meta-foreign",
        "results/celery-task-meta-kept",
        "results/celery-task-meta-young",
    ]


def test_create_bucket(s3_options: dict, s3: Any) -> None:
    name = f"kq-test-{uuid.uuid4().hex[:12]}"
    backend = make(f"s3://{name}/r", create_bucket=True, **s3_options)
    backend.store(StoredResult("t1", "SUCCESS", b"x"), ttl=60)
    make(f"s3://{name}/r", create_bucket=True, **s3_options).store(
        StoredResult("t2", "SUCCESS", b"y"), ttl=60
    )
    assert backend.get_many(["t1", "t2"]) == [
        StoredResult("t1", "SUCCESS", b"x"),
        StoredResult("t2", "SUCCESS", b"y"),
    ]
    for key in ("r/celery-task-meta-t1", "r/celery-task-meta-t2"):
        s3.delete_object(Bucket=name, Key=key)
    s3.delete_bucket(Bucket=name)


def test_an_unreachable_endpoint_is_backend_unavailable() -> None:
    backend = make(
        "s3://bucket/results",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        client_config={"connect_timeout": 1, "retries": {"total_max_attempts": 1}},
    )
    with pytest.raises(BackendUnavailable, match="127.0.0.1"):
        backend.get("t1")


def test_a_missing_bucket_is_a_configuration_error(s3_options: dict) -> None:
    backend = make(f"s3://kq-missing-{uuid.uuid4().hex[:12]}/r", **s3_options)
    with pytest.raises(ConfigurationError, match="create_bucket"):
        backend.store(StoredResult("t1", "SUCCESS", b"x"), ttl=60)
