"""PostgreSQL only: wait() woken by LISTEN/NOTIFY, and the backend living through a restart.

The restart test stops and starts the local cluster with pg_ctlcluster (as .ci/run does), so
it needs to run on the machine that hosts the server, as root; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from kq import App
from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable
from kq.states import STARTED, SUCCESS
from kq.testing.worker import worker_thread
from kq_sqlalchemy.backend import SQLBackend
from kq_sqlalchemy.config import database_url
from kq_sqlalchemy.flavours import POSTGRESQL

# The restart test stops the machine's PostgreSQL: it runs apart from the parallel tests.
pytestmark = pytest.mark.serial

# Stores each task id read from stdin, printing the monotonic time (shared by all processes on
# the machine) just before the store.
WRITER = """
import sys, time
from kq import App
from kq.backend import StoredResult
from kq.plugins import get_plugins
url, table = sys.argv[1:]
backend = get_plugins().backend_for(url).factory(url, {"table_name": table})
backend.get("connect and create the table now")
print("ready", flush=True)
for line in sys.stdin:
    before = time.monotonic()
    backend.store(StoredResult(line.strip(), "SUCCESS", b"ok"), 60)
    print(before, flush=True)
"""


@pytest.fixture
def database() -> str:
    return "postgresql"


class Reads:
    """Counts a backend's reads (``get``), which is what a polling wait would multiply."""

    def __init__(
        self,
        backend: SQLBackend,
        monkeypatch: pytest.MonkeyPatch,
        after: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.count = 0
        self._get = backend.get
        self._after = after
        monkeypatch.setattr(backend, "get", self)

    def __call__(self, task_id: str) -> StoredResult | None:
        found = self._get(task_id)
        self.count += 1
        self._after(self.count)
        return found

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while self.count < count:
            assert time.monotonic() < deadline, "the waiter never read"
            time.sleep(0.01)


def waiting(
    backend: SQLBackend, task_id: str, timeout: float = 60
) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``backend.wait(task_id)`` in a thread; the dict gets ``found`` and ``at``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["found"] = backend.wait(task_id, timeout)
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_waiter_is_woken_by_a_store_in_another_process(make, url, spawn, monkeypatch):
    """No polling: each wait reads once before the store and once after its notification, and
    wakes within milliseconds of the store (checked with a generous bound on a median)."""
    backend = make()
    reads = Reads(backend, monkeypatch)
    writer = spawn(WRITER, url, backend.table.name)
    assert writer.stdout.readline().strip() == "ready"
    latencies = []
    for n in range(5):
        task_id = uuid.uuid4().hex
        thread, outcome = waiting(backend, task_id)
        reads.wait_for(2 * n + 1)
        time.sleep(0.5)  # a poller would read several times meanwhile
        writer.stdin.write(task_id + "\n")
        writer.stdin.flush()
        stored_at = float(writer.stdout.readline())
        thread.join(60)
        assert outcome["found"] == StoredResult(task_id, SUCCESS, b"ok")
        assert reads.count == 2 * n + 2
        latencies.append(outcome["at"] - stored_at)
    assert statistics.median(latencies) < 0.1, latencies
    assert max(latencies) < 2, latencies


def test_a_result_stored_between_the_read_and_the_sleep_is_not_missed(make, monkeypatch):
    backend, writer = make(), make()
    task_id = uuid.uuid4().hex
    done = StoredResult(task_id, SUCCESS, b"done")
    # Right after the waiter's first read finds nothing, and before it sleeps, the result lands.
    Reads(backend, monkeypatch, after=lambda n: n == 1 and writer.store(done, 60))
    start = time.monotonic()
    assert backend.wait(task_id, timeout=30) == done
    assert time.monotonic() - start < 10  # not the 30 s timeout


def test_only_ready_results_wake_waiters(make, monkeypatch):
    backend, writer = make(), make()
    task_id = uuid.uuid4().hex
    reads = Reads(backend, monkeypatch)
    thread, outcome = waiting(backend, task_id)
    reads.wait_for(1)
    writer.store(StoredResult(task_id, STARTED, b"started"), 60)
    time.sleep(0.5)
    assert reads.count == 1
    writer.store(StoredResult(task_id, SUCCESS, b"done"), 60)
    thread.join(60)
    assert outcome["found"].payload == b"done" and reads.count == 2


def listener_pids(engine: sa.Engine, table: str) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE query = :listen"),
                {"listen": f'LISTEN "{table}"'},
            ).scalars()
        )


def test_a_waiter_survives_losing_its_listen_connection(make, engine, table, monkeypatch):
    backend, writer = make(), make()
    task_id = uuid.uuid4().hex
    reads = Reads(backend, monkeypatch)
    thread, outcome = waiting(backend, task_id)
    reads.wait_for(1)
    [pid] = listener_pids(engine, table)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    reads.wait_for(2)  # woken by the reconnection, in case something was missed meanwhile
    assert listener_pids(engine, table) not in ([], [pid])
    done = StoredResult(task_id, SUCCESS, b"done")
    writer.store(done, 60)
    thread.join(60)
    assert outcome["found"] == done


needs_cluster = pytest.mark.skipif(
    not (shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql") and os.geteuid() == 0),
    reason="needs the local PostgreSQL cluster, and root to restart it",
)


def pg_cluster(action: str) -> None:
    """Stop (fast: disconnecting every client) or start the local cluster, as .ci/run does."""
    versions = os.listdir("/etc/postgresql")
    extra = ["-m", "fast"] if action == "stop" else []
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", action, *extra],
        check=True,
        timeout=120,
        capture_output=True,
    )


def wait_until_accepting(url: str) -> None:
    conninfo = database_url(url, POSTGRESQL).set(drivername="postgresql").render_as_string(False)
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(conninfo).close()
            return
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "PostgreSQL did not come back within 60 s"
            time.sleep(0.2)


@needs_cluster
def test_a_server_restart_during_use(make, url, monkeypatch):
    """While the server is down every call raises BackendUnavailable (the worker retries its
    stores); once it is back the same backend works again, and a wait() that was blocked all
    along gets its result."""
    backend, writer = make(), make()
    task_id = uuid.uuid4().hex
    writer.store(StoredResult(task_id, STARTED, b"started"), 60)
    reads = Reads(backend, monkeypatch)
    thread, outcome = waiting(backend, task_id, timeout=180)
    reads.wait_for(1)
    try:
        pg_cluster("stop")
        with pytest.raises(BackendUnavailable, match="is unavailable"):
            writer.store(StoredResult(task_id, SUCCESS, b"lost"), 60)
        with pytest.raises(BackendUnavailable):
            writer.get(task_id)
        assert thread.is_alive()
    finally:
        pg_cluster("start")
    wait_until_accepting(url)
    done = StoredResult(task_id, SUCCESS, b"done")
    writer.store(done, 60)  # at once: the pool replaced its dead connections by itself
    assert writer.get(task_id) == done
    thread.join(60)
    assert outcome["found"] == done


@needs_cluster
def test_a_worker_keeps_a_result_finished_during_a_restart(url, table, caplog):
    """The kernel's retry (result_store_timeout) carries the store over the outage."""
    app = App(
        "restart",
        broker="memory://",
        backend=url,
        result_store_timeout=120,
        result_backend_options={"table_name": table},
        task_default_queue=f"kq-sqlalchemy-{uuid.uuid4().hex[:8]}",
    )
    started, release = threading.Event(), threading.Event()

    @app.task
    def hold() -> str:
        started.set()
        release.wait(60)
        return "survived"

    try:
        with worker_thread(app, pool="threads", concurrency=2):
            sent = hold.delay()
            assert started.wait(30)
            try:
                pg_cluster("stop")
                release.set()
                deadline = time.monotonic() + 30
                while "result backend unavailable" not in caplog.text:
                    assert time.monotonic() < deadline, "the worker never tried to store"
                    time.sleep(0.05)
            finally:
                pg_cluster("start")
            assert sent.get(timeout=120) == "survived"
    finally:
        app.close()
