"""Tasks for the tests of dispatch order (fair dispatch, priorities).

Configured only through KQ_* variables. Every run appends one JSON line (its label and when it
started and finished, wall clock) to a per-process file in $KQ_TEST_LEDGER_DIR, so a test can
tell in which order tasks ran and whether one waited for another.
"""

import json
import os
import time

from kq import App

app = App("order")


@app.task(name="order.sleep")
def sleep(label: str, seconds: float) -> None:
    started = time.time()
    time.sleep(seconds)
    line = json.dumps({"label": label, "started": started, "finished": time.time()})
    with open(os.path.join(os.environ["KQ_TEST_LEDGER_DIR"], f"order-{os.getpid()}.jsonl"), "a") as f:
        f.write(line + "\n")
