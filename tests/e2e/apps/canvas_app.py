"""The app the canvas end-to-end tests run in real worker processes (configured through KQ_*).

It also registers the test plugin kq_race (PLUGIN_GUIDE.md's worked example) with the plugin
manager, as an installed plugin's entry point would, so workers can run its ``race`` primitive.
"""

import os
import time

import kq_race
from kq import App

app = App("canvas")
if "kq-race" not in app.plugins.infos:
    app.plugins.register(kq_race, "kq-race")


def record(kind: str, value: str) -> None:
    path = os.path.join(os.environ["KQ_TEST_LEDGER_DIR"], f"{kind}-{os.getpid()}.log")
    with open(path, "a") as ledger:
        ledger.write(value + "\n")


@app.task(name="canvas.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="canvas.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="canvas.tsum")
def tsum(values: list) -> int:
    return sum(values)


@app.task(name="canvas.body", bind=True)
def body(self, values: list) -> list:
    """A chord body that proves how often it ran."""
    record("body", self.request.id)
    return values


@app.task(name="canvas.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="canvas.errback")
def errback(failed_task_id: str) -> None:
    record("errback", failed_task_id)


@app.task(name="canvas.sleep")
def sleep(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value
