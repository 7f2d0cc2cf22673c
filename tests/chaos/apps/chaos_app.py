"""The app the chaos tests run in real worker processes (configured through KQ_* variables).

Its one task records its own execution in the PostgreSQL ledger before it returns, so that a
run is on record even when the worker dies before the ack and the message comes back: the
ledger, not the broker, is the evidence of what ran (see tests/chaos/harness.py).
"""

import os

import psycopg
from psycopg import sql

from kq import App

app = App("chaos")

#: This process's connection to the ledger, opened by its first task: one per process (a
#: forked pool child opens its own), in autocommit, so each INSERT is durable when it returns.
_connection: psycopg.Connection | None = None
_owner = 0


def ledger() -> psycopg.Connection:
    global _connection, _owner
    if _connection is None or _connection.closed or _owner != os.getpid():
        _connection = psycopg.connect(os.environ["KQ_CHAOS_LEDGER_DSN"], autocommit=True)
        _owner = os.getpid()
    return _connection


@app.task(name="chaos.record", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def record(self) -> None:
    """acks_late: a worker killed before the ack leaves the message to be delivered again.
    reject_on_worker_lost: a killed pool child gives its task back instead of failing it."""
    statement = sql.SQL("INSERT INTO {} (task_id, redelivered, pid) VALUES (%s, %s, %s)").format(
        sql.Identifier(os.environ["KQ_CHAOS_LEDGER_TABLE"])
    )
    ledger().execute(statement, (self.request.id, bool(self.request.redelivered), os.getpid()))
