"""What is special to kq-azureblob: the blobs it writes, its URL forms and options, its errors,
cleanup of expired blobs and claims, checked against Azurite with Microsoft's own client."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.plugins import get_plugins
from kq.redact import safe_url, scrub
from kq.testing.imports import imported_on_load
from kq.testing.servers import free_port
from kq_azureblob.backend import AzureBlobBackend


def make(url: str, **options: Any) -> AzureBlobBackend:
    backend = get_plugins().backend_for(url).factory(url, options)
    assert isinstance(backend, AzureBlobBackend)
    return backend


@pytest.fixture
def backend(azure_url: str, options: dict[str, Any]):
    backend = make(azure_url, **options)
    yield backend
    backend.close()


def test_the_result_is_the_blob_body_with_state_and_expiry_in_metadata(
    backend: AzureBlobBackend, container: ContainerClient, key_prefix: str
) -> None:
    """The body is the result meta as the kernel encoded it (what Celery writes and reads); the
    state and the expiry travel beside it."""
    task_id = uuid.uuid4().hex
    payload = b'{"status": "SUCCESS", "result": 42, "task_id": "%s"}' % task_id.encode()
    before = time.time()
    backend.store(StoredResult(task_id, "SUCCESS", payload), ttl=300)
    blob = container.download_blob(f"{key_prefix}celery-task-meta-{task_id}")
    assert blob.readall() == payload
    metadata = blob.properties.metadata
    assert metadata["state"] == "SUCCESS"
    assert before + 300 <= float(metadata["expires_at"]) <= time.time() + 300
    backend.store(StoredResult(task_id, "SUCCESS", payload), ttl=None)
    assert (
        "expires_at"
        not in container.get_blob_client(f"{key_prefix}celery-task-meta-{task_id}")
        .get_blob_properties()
        .metadata
    )


def test_a_blob_without_kq_metadata_reads_as_missing(
    backend: AzureBlobBackend, container: ContainerClient, key_prefix: str
) -> None:
    """A blob some other program left under a result's name is not taken for a result."""
    task_id = uuid.uuid4().hex
    container.upload_blob(f"{key_prefix}celery-task-meta-{task_id}", b"not kq's")
    assert backend.get(task_id) is None


def test_the_container_is_created_by_the_first_write(azure_url: str, container: ContainerClient) -> None:
    name = f"kq-new-{uuid.uuid4().hex[:12]}"
    backend = make(azure_url, container_name=name)
    try:
        task_id = uuid.uuid4().hex
        assert backend.get(task_id) is None  # a read does not create it
        assert backend.cleanup() == 0
        assert backend.claim(f"claim-{task_id}", "first", 60) is None  # nor does it fail a claim
        stored = StoredResult(task_id, "SUCCESS", b"first")
        backend.store(stored, ttl=60)
        assert backend.get(task_id) == stored
    finally:
        backend.close()
        container._get_blob_service_client().delete_container(name)


def test_cleanup_deletes_only_what_expired(
    backend: AzureBlobBackend, container: ContainerClient, key_prefix: str
) -> None:
    kept, expiring = (
        StoredResult(uuid.uuid4().hex, "SUCCESS", b"kept"),
        StoredResult(uuid.uuid4().hex, "SUCCESS", b"expiring"),
    )
    backend.store(kept, ttl=None)
    backend.store(expiring, ttl=1)
    assert backend.claim("lapsing", "holder", 1) is None
    assert backend.claim("held", "holder", 60) is None
    time.sleep(1.2)
    assert backend.cleanup() == 2
    names = sorted(blob.name[len(key_prefix) :] for blob in container.list_blobs(name_starts_with=key_prefix))
    assert names == sorted([f"celery-task-meta-{kept.task_id}", "kq-claim/aGVsZA"])  # "held"
    assert backend.get(kept.task_id) == kept
    assert backend.claim("held", "other", 60) == "holder"
    assert backend.cleanup() == 0


def test_claims_are_kept_apart_per_key_prefix(
    azure_url: str, backend: AzureBlobBackend, container_name: str
) -> None:
    other = make(azure_url, container_name=container_name, key_prefix=f"other-{uuid.uuid4().hex[:8]}/")
    try:
        assert backend.claim("unique:job", "mine", 60) is None
        assert other.claim("unique:job", "theirs", 60) is None
        assert backend.claim("unique:job", "again", 60) == "mine"
    finally:
        other.close()


def test_the_account_url_form_with_a_credential(
    azurite: str, account: tuple[str, str], options: dict[str, Any]
) -> None:
    name, key = account
    backend = make(
        f"azureblockblob://{azurite}", credential={"account_name": name, "account_key": key}, **options
    )
    try:
        stored = StoredResult(uuid.uuid4().hex, "FAILURE", b"boom")
        backend.store(stored, ttl=60)
        assert backend.get(stored.task_id) == stored
    finally:
        backend.close()


def test_an_unreachable_service_raises_backend_unavailable_without_the_key(account: tuple[str, str]) -> None:
    name, key = account
    port = free_port()  # nothing listens there
    url = (
        f"azureblockblob://DefaultEndpointsProtocol=http;AccountName={name};"
        f"AccountKey={key};BlobEndpoint=http://127.0.0.1:{port}/{name};"
    )
    backend = make(url, retries=0, connection_timeout=2)
    try:
        for call in (
            lambda: backend.get("x"),
            lambda: backend.store(StoredResult("x", "SUCCESS", b""), 60),
            lambda: backend.claim("x", "y", 60),
            backend.cleanup,
        ):
            with pytest.raises(BackendUnavailable, match="unavailable") as caught:
                call()
            assert key not in str(caught.value)
            assert "AccountKey=**" in str(caught.value)
    finally:
        backend.close()


def test_the_account_key_is_masked_wherever_the_url_is_shown(
    azure_url: str, account: tuple[str, str]
) -> None:
    key = account[1]
    assert key not in safe_url(azure_url)
    assert "AccountKey=**" in safe_url(azure_url)
    assert key not in scrub(f"failed with {key}", azure_url)
    sas = "azureblockblob://https://acct.blob.core.windows.net/?sv=2024-08-04&sp=rwdl&sig=c2VjcmV0"
    assert "c2VjcmV0" not in safe_url(sas)
    with_sas = "azureblockblob://BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=1&sig=c2VjcmV0"
    assert "c2VjcmV0" not in safe_url(with_sas)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"container": "x"}, "unknown kq-azureblob option"),
        ({"container_name": "Results"}, "container_name must be 3-63 lower-case"),
        ({"container_name": "a--b"}, "container_name"),
        ({"key_prefix": 3}, "key_prefix must be a string"),
        ({"retries": -1}, "retries must be a whole number >= 0"),
        ({"read_timeout": "soon"}, "read_timeout must be a number of seconds"),
        ({"pool_size": 2.5}, "pool_size must be a whole number"),
    ],
)
def test_bad_options_fail_when_the_backend_is_made(
    azure_url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make(azure_url, **options)


def test_numbers_may_come_as_strings_from_the_environment(azure_url: str) -> None:
    backend = make(azure_url, retries="1", read_timeout="2.5", pool_size="8")
    assert (backend.settings.retries, backend.settings.read_timeout, backend.settings.pool_size) == (
        1,
        2.5,
        8,
    )
    backend.close()


@pytest.mark.parametrize(
    "url", ["azureblockblob://", "azureblockblob://not-a-connection-string", "azureblockblob://;;"]
)
def test_a_malformed_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="azureblockblob://"):
        make(url)


def test_loading_the_plugin_does_not_import_the_azure_client() -> None:
    assert imported_on_load("kq_azureblob", "kq_azureblob.backend", "azure.storage.blob") == ["kq_azureblob"]
