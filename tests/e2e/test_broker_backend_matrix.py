"""Every production broker with a result store other than its own: 10,000 tasks (half sent one
by one, half through ``send_many``) through a real `kq worker` process, all results correct.
(Redis with Redis results, RabbitMQ with rpc:// and SQLite with PostgreSQL are in
test_redis.py, test_amqp.py and test_sqlalchemy.py.)"""

import json
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from kq import App
from kq.testing.servers import require

pytestmark = pytest.mark.slow

TOTAL = 10_000


def redis_url() -> str:
    host, port = require("redis")
    return f"redis://{host}:{port}/14"


def amqp_url() -> str:
    host, port = require("rabbitmq")
    return f"amqp://guest:guest@{host}:{port}//"


def postgresql_url() -> str:
    host, port = require("postgresql")
    return f"db+postgresql://postgres@{host}:{port}/test"


@pytest.mark.parametrize(
    ("broker", "backend"),
    [(redis_url, postgresql_url), (amqp_url, redis_url)],
    ids=["redis-broker-postgresql-results", "rabbitmq-broker-redis-results"],
)
def test_10000_tasks(broker, backend, env, start_worker):
    broker, backend = broker(), backend()
    queue = f"kq-matrix-{uuid.uuid4().hex[:8]}"
    table = f"kq_matrix_{uuid.uuid4().hex[:8]}"
    options = {"table_name": table} if backend.startswith("db+") else {}
    env.update(
        KQ_BROKER_URL=broker,
        KQ_RESULT_BACKEND=backend,
        KQ_TASK_DEFAULT_QUEUE=queue,
        KQ_RESULT_BACKEND_OPTIONS=json.dumps(options),
    )
    client = App(
        "matrix", broker=broker, backend=backend, task_default_queue=queue, result_backend_options=options
    )
    try:
        start_worker("-P", "threads", "-c", "8")
        half = TOTAL // 2  # one at a time, then the rest in batches through send_many
        sent = [client.send_task("e2e.double", [n]) for n in range(half)]
        for start in range(half, TOTAL, 1000):
            sent += client.send_many(
                SimpleNamespace(task="e2e.double", args=[n], kwargs={}, options={})
                for n in range(start, min(TOTAL, start + 1000))
            )
        assert [r.get(timeout=300) for r in sent] == [2 * n for n in range(TOTAL)]
    finally:
        transport = client.new_transport()
        transport.purge(queue)
        transport.close()
        client.close()
        if options:
            engine = sa.create_engine(backend.replace("db+postgresql", "postgresql+psycopg"))
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            engine.dispose()
