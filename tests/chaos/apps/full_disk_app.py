"""The app the full-disk chaos test runs in a real ``kq worker`` (configured through KQ_*
variables): acks_late tasks that record each run in the harness's PostgreSQL ledger, which
lies off the full disk and keeps working while the broker's file system is full."""

import os
import time

from chaos_app import ledger
from psycopg import sql

from kq import App

app = App("full_disk", task_acks_late=True)


def record(request) -> None:
    statement = sql.SQL("INSERT INTO {} (task_id, redelivered, pid) VALUES (%s, %s, %s)").format(
        sql.Identifier(os.environ["KQ_CHAOS_LEDGER_TABLE"])
    )
    ledger().execute(statement, (request.id, bool(request.redelivered), os.getpid()))


@app.task(name="disk.gated", bind=True)
def gated(self, gate: str) -> None:
    """Record the run, then hold the pool slot until the test creates the file ``gate``: the
    task is running (message leased, result not stored) when the disk fills."""
    record(self.request)
    deadline = time.monotonic() + 120  # in case the test failed before opening the gate
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)


@app.task(name="disk.record", bind=True)
def record_run(self, n: int) -> int:
    record(self.request)
    return n
