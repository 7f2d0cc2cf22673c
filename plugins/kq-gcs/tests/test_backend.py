"""What is special to kq-gcs: the objects it writes, its URL and options, its errors and
cleanup, checked against the emulator with Google's own client."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from google.cloud import storage

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.plugins import get_plugins
from kq.testing.imports import imported_on_load
from kq.testing.servers import free_port
from kq_gcs.backend import GCSBackend


def make(url: str, **options: Any) -> GCSBackend:
    backend = get_plugins().backend_for(url).factory(url, options)
    assert isinstance(backend, GCSBackend)
    return backend


@pytest.fixture
def backend(gcs_url: str, options: dict[str, Any]):
    backend = make(gcs_url, **options)
    yield backend
    backend.close()


def test_the_result_is_the_object_with_state_and_expiry_in_metadata(
    backend: GCSBackend, bucket: storage.Bucket, key_prefix: str
) -> None:
    """The content is the result meta as the kernel encoded it (what Celery writes and reads);
    the state and the expiry travel beside it, the expiry also as customTime for lifecycle
    rules."""
    task_id = uuid.uuid4().hex
    payload = b'{"status": "SUCCESS", "result": 42, "task_id": "%s"}' % task_id.encode()
    before = time.time()
    backend.store(StoredResult(task_id, "SUCCESS", payload), ttl=300)
    blob = bucket.get_blob(f"{key_prefix}celery-task-meta-{task_id}")
    assert blob.download_as_bytes() == payload
    assert blob.metadata["state"] == "SUCCESS"
    expires_at = float(blob.metadata["expires_at"])
    assert before + 300 <= expires_at <= time.time() + 300
    assert abs(blob.custom_time - datetime.fromtimestamp(expires_at, timezone.utc)).total_seconds() < 0.01
    backend.store(StoredResult(task_id, "SUCCESS", payload), ttl=None)
    assert "expires_at" not in bucket.get_blob(f"{key_prefix}celery-task-meta-{task_id}").metadata


def test_the_prefix_comes_from_the_url_or_the_option(
    gcs_endpoint: str, bucket: storage.Bucket, key_prefix: str
) -> None:
    task_id = uuid.uuid4().hex
    for url, options, name in [
        (f"gs://{bucket.name}/{key_prefix}a/b", {}, f"{key_prefix}a/b/"),
        (f"gs://{bucket.name}/ignored", {"key_prefix": f"{key_prefix}opt-"}, f"{key_prefix}opt-"),
    ]:
        backend = make(url, endpoint=gcs_endpoint, **options)
        try:
            backend.store(StoredResult(task_id, "SUCCESS", b"x"), ttl=60)
        finally:
            backend.close()
        assert bucket.get_blob(f"{name}celery-task-meta-{task_id}") is not None


def test_an_object_without_kq_metadata_reads_as_missing(
    backend: GCSBackend, bucket: storage.Bucket, key_prefix: str
) -> None:
    """An object some other program left under a result's name is not taken for a result."""
    task_id = uuid.uuid4().hex
    bucket.blob(f"{key_prefix}celery-task-meta-{task_id}").upload_from_string(b"not kq's")
    assert backend.get(task_id) is None


def test_cleanup_deletes_only_what_expired(
    backend: GCSBackend, bucket: storage.Bucket, key_prefix: str
) -> None:
    kept = StoredResult(uuid.uuid4().hex, "SUCCESS", b"kept")
    expiring = StoredResult(uuid.uuid4().hex, "SUCCESS", b"expiring")
    backend.store(kept, ttl=None)
    backend.store(expiring, ttl=1)
    time.sleep(1.2)
    assert backend.cleanup() == 1
    names = [blob.name for blob in bucket.client.list_blobs(bucket, prefix=key_prefix)]
    assert names == [f"{key_prefix}celery-task-meta-{kept.task_id}"]
    assert backend.get(kept.task_id) == kept
    assert backend.cleanup() == 0


def test_a_missing_bucket_makes_the_backend_unavailable(gcs_endpoint: str) -> None:
    backend = make(f"gs://kq-missing-{uuid.uuid4().hex[:8]}", endpoint=gcs_endpoint)
    try:
        assert backend.get("x") is None
        for call in (lambda: backend.store(StoredResult("x", "SUCCESS", b""), 60), backend.cleanup):
            with pytest.raises(BackendUnavailable, match="bucket 'kq-missing-.*' does not exist"):
                call()
    finally:
        backend.close()


def test_an_unreachable_service_raises_backend_unavailable() -> None:
    backend = make("gs://kq-tests", endpoint=f"http://127.0.0.1:{free_port()}", retry_timeout=0)
    try:
        for call in (
            lambda: backend.get("x"),
            lambda: backend.store(StoredResult("x", "SUCCESS", b""), 60),
            backend.cleanup,
        ):
            with pytest.raises(BackendUnavailable, match="gs://kq-tests is unavailable"):
                call()
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bucket": "x"}, "unknown kq-gcs option"),
        ({"project": 3}, "project must be a string"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"timeout": "soon"}, "timeout must be a number"),
        ({"retry_timeout": -1}, "retry_timeout must be a number of seconds >= 0"),
        ({"credentials": "/nonexistent/key.json"}, "cannot read a service-account key"),
    ],
)
def test_bad_options_fail_when_the_backend_is_made(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make("gs://kq-tests", endpoint="http://127.0.0.1:9", **options)


@pytest.mark.parametrize("url", ["gs://", "gs:///prefix", "gs://bucket/prefix?x=1"])
def test_a_malformed_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="gs://<bucket>"):
        make(url, endpoint="http://127.0.0.1:9")


def test_numbers_may_come_as_strings_from_the_environment() -> None:
    backend = make("gs://kq-tests", endpoint="http://127.0.0.1:9", timeout="2.5", retry_timeout="0")
    assert (backend.settings.timeout, backend.settings.retry_timeout) == (2.5, 0)
    backend.close()


def test_loading_the_plugin_does_not_import_the_google_client() -> None:
    assert imported_on_load("kq_gcs", "kq_gcs.backend", "google.cloud.storage") == ["kq_gcs"]
