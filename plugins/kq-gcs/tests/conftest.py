"""A local Cloud Storage emulator for kq-gcs's tests.

One ``gcp-storage-emulator`` (from PyPI, in kq's ``test`` extra) per test session, in memory, on
a free loopback port. Every test gets a key prefix of its own in one bucket, so tests never see
each other's objects.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from kq.testing.servers import free_port, spawn, under_ci

BUCKET = "kq-tests"
#: How the tests start the emulator. gcp-storage-emulator rewrites a JSON copy of every object's
#: metadata after each write, even in memory, where nothing reads that copy back, so each write
#: costs time in proportion to the objects stored (the contract's 1,500 results alone took a
#: minute). Here it runs with that copy switched off; every answer of its API is unchanged.
RUN_EMULATOR = """
import sys
from gcp_storage_emulator import storage
from gcp_storage_emulator.__main__ import main
storage.Storage._write_config_to_file = lambda self: None
main(sys.argv[1:])
"""


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """The JSON API endpoint of a running emulator (``http://127.0.0.1:<port>``), with the
    tests' bucket created."""
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        message = "gcp-storage-emulator is not installed (pip install gcp-storage-emulator)"
        if under_ci():
            pytest.fail(f"{message}; it is in kq's test extra")
        pytest.skip(message)
    port = free_port()
    argv = [sys.executable, "-c", RUN_EMULATOR, "start", "--host", "127.0.0.1"]
    with tempfile.TemporaryDirectory() as workdir:
        with spawn("gcp-storage-emulator", [*argv, "--port", str(port), "--in-memory"], port, cwd=workdir):
            endpoint = f"http://127.0.0.1:{port}"
            client = storage.Client(
                project="kq", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
            )
            client.create_bucket(BUCKET)
            client.close()
            yield endpoint


@pytest.fixture
def key_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def gcs_url(key_prefix: str) -> str:
    return f"gs://{BUCKET}/{key_prefix}"


@pytest.fixture
def options(gcs_endpoint: str) -> dict[str, str]:
    return {"endpoint": gcs_endpoint}


@pytest.fixture
def bucket(gcs_endpoint: str) -> Iterator[storage.Bucket]:
    """The tests' bucket, through Google's client, to look behind the backend's back."""
    client = storage.Client(
        project="kq", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_endpoint}
    )
    yield client.bucket(BUCKET)
    client.close()
