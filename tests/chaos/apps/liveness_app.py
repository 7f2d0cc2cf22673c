"""The chaos app (``chaos_app``) plus what the liveness tests need (tests/chaos/test_liveness.py).

- ``liveness.record``: records its run in the ledger like ``chaos.record``, but keeps its result,
  so that a result backend outage has something to fail on.
- ``liveness.sleep``: a long acks_late task, which must not look like a stuck loop (it touches
  ``started``, if given, as it starts).
- A ``task_rejected`` receiver that never returns for a message of the unregistered task
  :data:`WEDGE`: a plugin hook that blocks on the consumer loop's own thread, which only the
  watchdog can get the worker out of.
"""

import os
import threading
import time

from chaos_app import app, ledger
from psycopg import sql

from kq.signals import task_rejected

__all__ = ["app"]

#: Sending this (unregistered) task wedges the worker's loop in :func:`wedge`.
WEDGE = "liveness.wedge"


@app.task(name="liveness.record", bind=True, acks_late=True)
def record(self) -> str:
    statement = sql.SQL("INSERT INTO {} (task_id, redelivered, pid) VALUES (%s, %s, %s)").format(
        sql.Identifier(os.environ["KQ_CHAOS_LEDGER_TABLE"])
    )
    ledger().execute(statement, (self.request.id, bool(self.request.redelivered), os.getpid()))
    return self.request.id


@app.task(name="liveness.sleep", acks_late=True)
def sleep(seconds: float, started: str | None = None) -> float:
    if started:
        open(started, "w").close()
    time.sleep(seconds)
    return seconds


@task_rejected.connect
def wedge(delivery, reason: str, detail: str, **_: object) -> None:
    if WEDGE in detail:
        threading.Event().wait()  # never set: this hook never returns
