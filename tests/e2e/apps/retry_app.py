"""Tasks for the retry, progress and request-context end-to-end tests.

Each run of a flaky task appends ``{"key", "retries", "at"}`` to a per-process JSON-lines
ledger in $KQ_TEST_LEDGER_DIR, so a test can count the runs and measure the delays between them.
"""

import json
import os
import time

import kq
from kq import App

app = App("retry")


def record(kind: str, **fields: object) -> None:
    path = os.path.join(os.environ["KQ_TEST_LEDGER_DIR"], f"{kind}-{os.getpid()}.jsonl")
    with open(path, "a") as ledger:
        ledger.write(json.dumps(fields) + "\n")


def flaky(self: kq.Task, key: str, failures: int) -> int:
    """Fails (ValueError) on its first ``failures`` runs, then returns how many retries it took."""
    record("flaky", key=key, retries=self.request.retries, at=time.time(), id=self.request.id)
    if self.request.retries < failures:
        raise ValueError(f"{key}: failure {self.request.retries + 1} of {failures}")
    return self.request.retries


backoff = app.task(
    name="retry.backoff",
    bind=True,
    autoretry_for=(ValueError,),
    retry_backoff=1,
    retry_jitter=False,
    max_retries=3,
)(flaky)
once = app.task(
    name="retry.once",
    bind=True,
    autoretry_for=(ValueError,),
    retry_backoff=True,
    retry_jitter=False,
    max_retries=1,
)(flaky)


@app.task(name="retry.manual", bind=True, max_retries=2)
def manual(self: kq.Task, key: str) -> str:
    """Retries itself by hand with a countdown until its retries run out."""
    record("flaky", key=key, retries=self.request.retries, at=time.time(), id=self.request.id)
    raise self.retry(exc=KeyError(key), countdown=0.2)


@app.task(name="retry.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="retry.progress", bind=True)
def progress(self: kq.Task, total: int, pause: float) -> int:
    """Reports ``{"current": n, "total": total}`` as state PROGRESS for n = 0..total."""
    for n in range(total + 1):
        self.update_state(state="PROGRESS", meta={"current": n, "total": total})
        time.sleep(pause)
    return total


@app.task(name="retry.context", bind=True)
def context(self: kq.Task, *args: int, **kwargs: int) -> dict:
    """What the task sees of its own call, through ``self.request`` and the kq proxies."""
    request = self.request
    return {
        "id": request.id,
        "args": list(request.args),
        "kwargs": dict(request.kwargs),
        "retries": request.retries,
        "eta": request.eta.isoformat() if request.eta else None,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "hostname": request.hostname,
        "delivery_info": request.delivery_info,
        "current_task": kq.current_task.name,
        "current_app": kq.current_app.main,
    }
