"""memcached servers of the tests' own, started on free loopback ports for the session."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

import pytest

from kq.testing.servers import free_port, spawn, under_ci


def memcached_server(port: int, extra: Sequence[str] = ()) -> AbstractContextManager[tuple[str, int]]:
    """A memcached on ``127.0.0.1:port`` for the block (Debian's ``memcached`` package; CI
    installs it in .ci/run). 64 MB, TCP only; root must name the user it runs as."""
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", *extra]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    return spawn("memcached", argv, port)


@pytest.fixture(scope="session")
def memcached() -> Iterator[tuple[str, int]]:
    with memcached_server(free_port()) as address:
        yield address


@pytest.fixture(scope="session")
def second_memcached() -> Iterator[tuple[str, int]]:
    with memcached_server(free_port()) as address:
        yield address


@pytest.fixture(scope="session")
def tls_memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tuple[str, int], str]]:
    """A memcached speaking TLS (``-Z``) with a self-signed certificate for 127.0.0.1 made by
    the ``openssl`` program: ``((host, port), path of the certificate)``."""
    if shutil.which("openssl") is None:
        if under_ci():
            pytest.fail("openssl is not installed (CI must install it: see .ci/run)")
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("memcached-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    with memcached_server(free_port(), ["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"]) as address:
        yield address, str(pathlib.Path(cert))
