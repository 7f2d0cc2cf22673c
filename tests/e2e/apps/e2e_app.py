"""The app the end-to-end tests run in real worker processes.

Configured only through KQ_* variables. Tasks that must prove "ran exactly once" append their
id to a per-process ledger file in $KQ_TEST_LEDGER_DIR.
"""

import os
import time

from kq import App

app = App("e2e")


def record(kind: str, task_id: str) -> None:
    path = os.path.join(os.environ["KQ_TEST_LEDGER_DIR"], f"{kind}-{os.getpid()}.log")
    with open(path, "a") as ledger:
        ledger.write(task_id + "\n")


@app.task(name="e2e.double", bind=True)
def double(self, n: int) -> int:
    record("ran", self.request.id)
    return n * 2


@app.task(name="e2e.slow", bind=True, acks_late=True)
def slow(self, seconds: float) -> float:
    record("started", self.request.id)
    time.sleep(seconds)
    record("finished", self.request.id)
    return seconds


@app.task(name="e2e.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="e2e.fail")
def fail(message: str) -> None:
    raise ValueError(message)
