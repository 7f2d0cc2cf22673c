"""Servers, throw-away tables and child processes for kq-sqlalchemy's tests.

Every test gets a table of its own (``table_name`` option), dropped afterwards, so tests never
see each other's rows and the real ``kq_results`` table is never touched. A test that takes a
``database`` (directly or through ``url``, ``table`` or ``make``) runs once against PostgreSQL
and once against MariaDB; a class pins one by overriding ``database``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from kq.plugins import get_plugins
from kq.testing.servers import require
from kq_sqlalchemy.backend import SQLBackend
from kq_sqlalchemy.config import database_url

#: database -> (server name for kq.testing.servers, user)
SERVERS = {"postgresql": ("postgresql", "postgres"), "mysql": ("mariadb", "root")}


@pytest.fixture(params=sorted(SERVERS))
def database(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def url(database: str) -> str:
    """The test server's ``db+`` URL (the test skips, or fails under CI, if it is down)."""
    server, user = SERVERS[database]
    host, port = require(server)
    return f"db+{database}://{user}@{host}:{port}/test"


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    """A plain engine on the test server, to look at tables behind the backend's back."""
    engine = sa.create_engine(
        database_url(url, get_plugins().backend_for(url).factory), poolclass=sa.NullPool
    )
    yield engine
    engine.dispose()


@pytest.fixture
def table(engine: sa.Engine) -> Iterator[str]:
    """A table name no other test uses; the table is dropped after the test."""
    name = f"kq_test_{uuid.uuid4().hex[:12]}"
    yield name
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}_counters"))


@pytest.fixture
def make(url: str, table: str) -> Iterator[Callable[..., SQLBackend]]:
    """``make(**options)``: a backend on the test's server and table, closed after the test."""
    made: list[SQLBackend] = []

    def make_backend(**options: object) -> SQLBackend:
        backend = get_plugins().backend_for(url).factory(url, {"table_name": table, **options})
        made.append(backend)
        return backend

    yield make_backend
    for backend in made:
        backend.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn(code, *args)``: a child Python process running ``code``, talking line by line
    over stdin and stdout; any still running at teardown is killed."""
    children: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
