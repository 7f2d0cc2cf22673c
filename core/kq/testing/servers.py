"""Tests that need a real server (Redis, RabbitMQ, PostgreSQL, MariaDB) call :func:`require`.

Off CI, a server that cannot be reached skips the test with the reason. Under CI (``CI=true``)
it fails instead: CI starts every server first (``.ci/run``), so an unreachable one is a real
problem, never a reason to pass quietly.

Tests that stop and start a server share it with every other test process on the machine:
:func:`hold` takes a machine-wide lock on it, shared by ordinary tests and exclusive for the one
that restarts it, so no test finds the server gone from under it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

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


def under_ci() -> bool:
    """True under CI (``CI=true``), where a missing server or privilege fails a test instead
    of skipping it."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(name: str) -> tuple[str, int]:
    """Return ``(host, port)`` of server ``name``, or skip (fail under CI) if it is down."""
    host, port = SERVERS[name]
    if not reachable(host, port):
        message = f"{name} is not reachable at {host}:{port}"
        if under_ci():
            pytest.fail(f"{message} (CI must start it: see .ci/run)")
        pytest.skip(message)
    return host, port


@contextmanager
def hold(name: str, *, exclusive: bool = False, wait: float = 600.0) -> Iterator[tuple[str, int]]:
    """Hold the lock on server ``name`` for the block and give its ``(host, port)``, as
    :func:`require` does once the lock is taken (a restart elsewhere has finished by then).

    ``exclusive=True`` is for a test that stops the server: it waits until no other test holds
    the lock, and keeps every other test waiting until it is done.
    """
    path = os.path.join(tempfile.gettempdir(), f"kq-{name}-server.lock")
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    with open(path, "a") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{path} stayed locked for {wait:.0f} s")
                time.sleep(0.1)
        yield require(name)


def delete_redis_keys(prefix: str, db: int = 15, host: str = "127.0.0.1", port: int = 6379) -> None:
    """Delete every key under ``prefix`` in Redis database ``db``, in batches (a soak test may
    leave hundreds of thousands): the clean-up of tests that give themselves a key prefix."""
    import redis  # only tests of Redis plugins call this; the kernel does not need redis-py

    client = redis.Redis(host=host, port=port, db=db, socket_timeout=30)
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=10_000):
            batch.append(key)
            if len(batch) == 10_000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def delete_amqp_queues(*queues: str, host: str = "127.0.0.1", port: int = 5672) -> None:
    """Delete each of ``queues`` and its dead-letter queue from RabbitMQ: the clean-up of tests
    that give themselves queues of their own."""
    import amqp  # py-amqp comes with kombu, a dependency of the kernel

    connection = amqp.Connection(f"{host}:{port}")
    connection.connect()
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
            channel.queue_delete(f"{queue}.dlq")
    finally:
        connection.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now, for a server a test starts itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def spawn(
    name: str,
    argv: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    ready: float = 60.0,
) -> Iterator[tuple[str, int]]:
    """Run a server of the test's own (an emulator such as moto, Azurite or memcached) on
    ``127.0.0.1:port`` for the block, and give its ``(host, port)`` once it accepts connections.

    A missing program skips the test off CI and fails it under CI, as :func:`require` does for
    the machine's servers. The server's output goes to a temporary file that is shown when it
    does not come up; the process is terminated (then killed) when the block ends.
    """
    program = shutil.which(argv[0]) or (argv[0] if os.path.isfile(argv[0]) else None)
    if program is None:
        message = f"{name}: {argv[0]!r} is not installed"
        if under_ci():
            pytest.fail(f"{message} (CI must install it: see .ci/run)")
        pytest.skip(message)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [program, *argv[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + ready
            while not reachable("127.0.0.1", port, timeout=0.5):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-4000:]
                    pytest.fail(
                        f"{name} did not come up on 127.0.0.1:{port} (exit code {process.poll()}):\n{output}"
                    )
                time.sleep(0.1)
            yield "127.0.0.1", port
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
