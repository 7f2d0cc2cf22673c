"""Azurite, Microsoft's Blob Storage emulator, for kq-azureblob's tests.

One Azurite per test session, in memory, on a free loopback port (``azurite-blob`` from npm:
``npm install -g azurite``; CI installs it in ``.ci/run``). Every test gets a key prefix of its
own in one shared container, so tests never see each other's blobs.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from kq.testing.servers import free_port, spawn

#: Azurite's fixed development account; its key is public (Microsoft documents it).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "kq-tests"


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """The blob endpoint of a running Azurite (``http://127.0.0.1:<port>/devstoreaccount1``)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        with spawn(
            "azurite",
            [
                "azurite-blob",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ],
            port,
            cwd=workdir,
        ):
            yield f"http://127.0.0.1:{port}/{ACCOUNT}"


@pytest.fixture(scope="session")
def connection_string(azurite: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={azurite};"
    )


@pytest.fixture(scope="session")
def account() -> tuple[str, str]:
    """Azurite's account name and key."""
    return ACCOUNT, ACCOUNT_KEY


@pytest.fixture
def container_name() -> str:
    return CONTAINER


@pytest.fixture
def azure_url(connection_string: str) -> str:
    return f"azureblockblob://{connection_string}"


@pytest.fixture
def key_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def options(key_prefix: str) -> dict[str, str]:
    return {"container_name": CONTAINER, "key_prefix": key_prefix}


@pytest.fixture
def container(connection_string: str) -> Iterator[ContainerClient]:
    """The tests' container, through Microsoft's client, to look behind the backend's back."""
    service = BlobServiceClient.from_connection_string(connection_string)
    yield service.get_container_client(CONTAINER)
    service.close()
