"""A unique task for the unique-task end-to-end tests; each run is recorded in the ledger as
``ran`` (see e2e_app.record)."""

import time

from e2e_app import record

from kq import App

app = App("unique")


@app.task(name="unique.work", bind=True, unique_for=60)
def work(self, n: int, seconds: float = 0.5) -> int:
    record("ran", self.request.id)
    time.sleep(seconds)
    return n
