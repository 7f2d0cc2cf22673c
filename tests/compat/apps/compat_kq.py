"""The kq side of the compatibility tests: the tasks, under the names the Celery app gives them.

Configured through ``KQ_*`` (broker, result backend, default queue, transport options)."""

from kq import App

app = App("compat")


@app.task(name="compat.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="compat.mul")
def mul(x: int, y: int) -> int:
    return x * y


@app.task(name="compat.fail")
def fail(message: str) -> None:
    raise ValueError(message)
