"""The app the rate-limit end-to-end tests run in real worker processes (configured through KQ_*).

Each task appends ``<wall time> <pid>`` to ``<name>-<pid>.log`` in $KQ_TEST_LEDGER_DIR as it
starts, so a test can see when each ran and in which worker process.
"""

import os
import time

from kq import App

app = App("rate")


def record(kind: str) -> None:
    started = time.time()
    path = os.path.join(os.environ["KQ_TEST_LEDGER_DIR"], f"{kind}-{os.getpid()}.log")
    with open(path, "a") as ledger:
        ledger.write(f"{started!r} {os.getpid()}\n")


@app.task(name="rate.local", rate_limit="20/s")
def local(n: int) -> int:
    record("local")
    return n


@app.task(name="rate.global10", global_rate_limit="10/s")
def global10(n: int) -> int:
    record("global10")
    return n


@app.task(name="rate.global5", global_rate_limit="5/s")
def global5(n: int) -> int:
    record("global5")
    return n


@app.task(name="rate.free")
def free() -> None:
    record("free")
