"""Google's Pub/Sub emulator for kq-gcpubsub's tests.

The emulator ships with the Google Cloud CLI (component ``pubsub-emulator``, Java); it is not on
PyPI or npm. One runs per test session on a free loopback port, and the Google clients find it
through ``PUBSUB_EMULATOR_HOST``, set for the session. Off CI a machine without it skips these
tests; under CI they fail.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from kq.testing.servers import free_port, spawn

#: Where the Debian/Ubuntu package google-cloud-cli-pubsub-emulator (and gcloud's installer)
#: put the emulator, relative to the SDK's root.
LAUNCHER = pathlib.Path("platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")


def emulator_program() -> str:
    gcloud = shutil.which("gcloud")
    roots = [pathlib.Path(gcloud).resolve().parent.parent] if gcloud else []
    roots.append(pathlib.Path("/usr/lib/google-cloud-sdk"))
    for root in roots:
        if (root / LAUNCHER).is_file():
            return str(root / LAUNCHER)
    return "cloud-pubsub-emulator"  # not installed: spawn() skips (fails under CI)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """``host:port`` of a running emulator, also in ``PUBSUB_EMULATOR_HOST`` for the session."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        argv = [emulator_program(), "--host=127.0.0.1", f"--port={port}", f"--dir={workdir}"]
        with spawn("pubsub-emulator", argv, port, cwd=workdir, ready=120):
            before = os.environ.get("PUBSUB_EMULATOR_HOST")
            os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"
            try:
                yield f"127.0.0.1:{port}"
            finally:
                if before is None:
                    del os.environ["PUBSUB_EMULATOR_HOST"]
                else:
                    os.environ["PUBSUB_EMULATOR_HOST"] = before


@pytest.fixture
def pubsub_url(pubsub_emulator: str) -> str:
    return "gcpubsub://projects/kq-test"


@pytest.fixture
def pubsub_options() -> dict[str, Any]:
    """kombu pulls in threads of its own, which the interpreter waits for when it exits; once
    the emulator is stopped, a pull still running would retry for kombu's default 300 s."""
    return {"retry_timeout_seconds": 5}
