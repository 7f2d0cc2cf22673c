"""The Django example, run for real: ``manage.py migrate``, Django's development server and a
``kq worker`` process (threads pool, one thread), on PostgreSQL with a SQLite broker file.

Everything Django runs in those processes; this test process only speaks HTTP to the server,
publishes one diagnostic task with a plain kq App, and reads the tables with psycopg. (Django can
be set up once per process, and kq-django's own tests set it up in the test process with other
settings.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kq import App
from kq.testing.servers import require
from kq.testing.worker import WorkerProcess

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Shop:
    """The running example: its database, server and worker."""

    def __init__(self, database: str, env: dict[str, str], url: str, worker: WorkerProcess) -> None:
        self.database, self.env, self.url, self.worker = database, env, url, worker

    def request(self, method: str, path: str, data: dict[str, str] | None = None) -> tuple[int, dict]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.url + path, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def query(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=self.database) as conn:
            return conn.execute(sql, params).fetchall()

    def results(self, task: str) -> list[tuple[str, Any]]:
        """``(state, result)`` of every stored result of ``task``, whatever its state, from the
        django:// backend's table."""
        rows = self.query("SELECT state, payload FROM kq_django_taskresult")
        metas = [(state, json.loads(bytes(payload))) for state, payload in rows]
        return [(state, meta["result"]) for state, meta in metas if meta.get("name") == task]

    def wait_for_result(self, task_id: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query("SELECT state, payload FROM kq_django_taskresult WHERE task_id = %s", task_id)
            if rows and rows[0][0] == "SUCCESS":
                return json.loads(bytes(rows[0][1]))["result"]
            time.sleep(0.1)
        raise AssertionError(f"no result for {task_id} after {timeout} s:\n{self.worker.output()}")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    import psycopg

    host, port = require("postgresql")
    database = f"kq_example_{uuid.uuid4().hex[:12]}"
    tmp = tmp_path_factory.mktemp("django-example")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shopsite.settings",  # not another test's, inherited
        "SHOP_DATABASE": database,
        "KQ_BROKER_URL": f"sqlite:///{tmp / 'broker.sqlite3'}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(EXAMPLE), os.environ.get("PYTHONPATH")) if p),
    }
    with psycopg.connect(host=host, port=port, user="postgres", dbname="test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=EXAMPLE, env=env, check=True, timeout=120
        )
        server_port = free_port()
        server_log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{server_port}", "--noreload"],
            cwd=EXAMPLE,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", server_port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp / "server.log").read_text()
                assert time.monotonic() < deadline, (tmp / "server.log").read_text()
                time.sleep(0.1)
        worker = WorkerProcess(
            "shopsite.kqapp:app",
            ["-P", "threads", "-c", "1", "-Q", "shop"],
            env=env,
            cwd=str(EXAMPLE),
            log_path=str(tmp / "worker.log"),
        )
        with worker.start():
            yield Shop(database, env, f"http://127.0.0.1:{server_port}", worker)
            assert worker.stop() == 0, worker.output()
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
            server_log.close()
        with psycopg.connect(host=host, port=port, user="postgres", dbname="test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_a_task_published_in_a_rolled_back_transaction_is_never_sent(shop: Shop) -> None:
    """The view writes the order and queues its confirmation, then finds the stock short and
    rolls back: no order, and no task. The next order, committed, is confirmed by the worker,
    which found its row; and of the two queued confirmations only that one ever ran."""
    status, body = shop.request("POST", "/orders/", {"item": "lamp", "quantity": "50"})
    assert (status, body) == (409, {"error": "only 10 lamp in stock"})
    assert shop.query("SELECT count(*) FROM orders_order") == [(0,)]

    status, body = shop.request("POST", "/orders/", {"item": "chair", "quantity": "2"})
    assert status == 201 and body["status"] == "new"
    order = body["order"]
    deadline = time.monotonic() + 30
    while shop.request("GET", f"/orders/{order}/")[1]["status"] != "confirmed":
        assert time.monotonic() < deadline, shop.worker.output()
        time.sleep(0.1)

    time.sleep(0.5)  # a task sent before the committed one would have run by now, on one thread
    assert shop.results("orders.confirm") == [("SUCCESS", {"order": order, "item": "chair", "quantity": 2})]
    assert "DoesNotExist" not in shop.worker.output()
    assert shop.query("SELECT count(*) FROM orders_order") == [(1,)]


def test_database_connections_are_closed_around_tasks(shop: Shop) -> None:
    """Two runs of a diagnostic task on the worker's one thread: neither starts with a
    connection open (the one the first run used was closed after it), they use different
    PostgreSQL sessions, and the first session is gone from pg_stat_activity."""
    client = App("shop.test", broker=shop.env["KQ_BROKER_URL"], backend=None)
    try:
        first_id, second_id = uuid.uuid4().hex, uuid.uuid4().hex
        client.send_task("orders.db_session", task_id=first_id, queue="shop")
        first = shop.wait_for_result(first_id)
        client.send_task("orders.db_session", task_id=second_id, queue="shop")
        second = shop.wait_for_result(second_id)
    finally:
        client.close()
    assert first["open_at_start"] is False and second["open_at_start"] is False
    assert first["pid"] != second["pid"]
    assert shop.query("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", first["pid"]) == [(0,)]
