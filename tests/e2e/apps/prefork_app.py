"""The app the prefork end-to-end tests run in real `kq worker -P prefork` processes.

Configured only through KQ_* variables. Tasks note which child ran them by appending
``<task id> <pid>`` to a per-process file in $KQ_TEST_LEDGER_DIR, so tests can tell a replaced
or grown child from the one before, and kill the child running a given task.
"""

import os
import time

from kq import App
from kq.exceptions import SoftTimeLimitExceeded

app = App("prefork")


def record(kind: str, task_id: str) -> None:
    path = os.path.join(os.environ["KQ_TEST_LEDGER_DIR"], f"{kind}-{os.getpid()}.log")
    with open(path, "a") as ledger:
        ledger.write(f"{task_id} {os.getpid()}\n")


@app.task(name="prefork.pid", bind=True)
def pid(self) -> int:
    record("ran", self.request.id)
    return os.getpid()


@app.task(name="prefork.spin", bind=True, time_limit=2)
def spin(self) -> None:
    record("spinning", self.request.id)
    while True:
        pass


@app.task(name="prefork.sleep", bind=True, acks_late=True)
def sleep(self, seconds: float) -> float:
    record("started", self.request.id)
    time.sleep(seconds)
    record("finished", self.request.id)
    return seconds


@app.task(name="prefork.once_then_ok", bind=True, acks_late=True, reject_on_worker_lost=True)
def once_then_ok(self, marker: str) -> str:
    """The first run waits to be killed; the run after that succeeds."""
    first = not os.path.exists(marker)
    if first:
        open(marker, "w").close()
    record("started", self.request.id)
    if first:
        time.sleep(60)
    return "ok"


@app.task(name="prefork.cleans_up", bind=True, soft_time_limit=1)
def cleans_up(self) -> str:
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "never interrupted"
