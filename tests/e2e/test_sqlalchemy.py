"""A real `kq worker` process with the SQLite broker storing results in PostgreSQL or MariaDB
(kq-sqlalchemy), read back by a client: every value correct, every row in the database."""

import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from kq import App
from kq.testing.servers import require

pytestmark = pytest.mark.slow

#: database -> (server for kq.testing.servers, user)
SERVERS = {"postgresql": ("postgresql", "postgres"), "mysql": ("mariadb", "root")}


@pytest.fixture
def database_engine(database: str) -> Iterator[sa.Engine]:
    """An engine on the test server, for looking at the results table directly."""
    server, user = SERVERS[database]
    host, port = require(server)
    driver = "psycopg" if database == "postgresql" else "pymysql"
    engine = sa.create_engine(f"{database}+{driver}://{user}@{host}:{port}/test", poolclass=sa.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def results(database: str, database_engine: sa.Engine) -> Iterator[tuple[str, str]]:
    """``(url, table)``: the backend URL of the test server and a table of the test's own,
    dropped afterwards."""
    url = database_engine.url
    table = f"kq_e2e_{uuid.uuid4().hex[:12]}"
    yield f"db+{database}://{url.username}@{url.host}:{url.port}/{url.database}", table
    with database_engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


@pytest.fixture
def env(env: dict[str, str], results: tuple[str, str]) -> dict[str, str]:
    url, table = results
    return {**env, "KQ_RESULT_BACKEND": url, "KQ_RESULT_BACKEND_OPTIONS": json.dumps({"table_name": table})}


@pytest.fixture
def client(db_url: str, results: tuple[str, str]) -> Iterator[App]:
    url, table = results
    app = App("client", broker=db_url, backend=url, result_backend_options={"table_name": table})
    yield app
    app.close()


@pytest.mark.parametrize(("database", "total"), [("postgresql", 10_000), ("mysql", 2_000)])
def test_tasks_through_a_worker_with_database_results(client, start_worker, total, results, database_engine):
    sent = [client.send_task("e2e.double", [n]) for n in range(total)]
    failed = client.send_task("e2e.fail", ["broken on purpose"])
    worker = start_worker("-P", "threads", "-c", "4")
    values = [result.get(timeout=300) for result in sent]
    assert values == [2 * n for n in range(total)]
    with pytest.raises(ValueError, match="broken on purpose"):
        failed.get(timeout=60)
    assert worker.stop() == 0
    with database_engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT count(*) FROM {results[1]}")).scalar()
    assert rows == total + 1
