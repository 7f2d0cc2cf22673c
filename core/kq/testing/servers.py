"""Tests that need a real server (Redis, RabbitMQ, PostgreSQL, MariaDB) call :func:`require`.

Off CI, a server that cannot be reached skips the test with the reason. Under CI (``CI=true``)
it fails instead: CI starts every server first (``.ci/run``), so an unreachable one is a real
problem, never a reason to pass quietly.
"""

from __future__ import annotations

import os
import socket

import pytest

#: Where the development and CI machines run each server.
SERVERS = {
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
    "postgresql": ("127.0.0.1", 5432),
    "mariadb": ("127.0.0.1", 3306),
}


def reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str) -> tuple[str, int]:
    """Return ``(host, port)`` of server ``name``, or skip (fail under CI) if it is down."""
    host, port = SERVERS[name]
    if not reachable(host, port):
        message = f"{name} is not reachable at {host}:{port}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message} (CI must start it: see .ci/run)")
        pytest.skip(message)
    return host, port
