"""The app the beat end-to-end tests run: its schedule comes from KQ_BEAT_SCHEDULE, and its one
task records which entry and slot it served, and when, in $KQ_TEST_LEDGER_DIR."""

import json
import os
import time

from kq import App

app = App("beat")


@app.task(name="beat.tick", bind=True)
def tick(self) -> None:
    line = json.dumps(
        {
            "id": self.request.id,
            "entry": self.request.headers.get("kq_beat_entry"),
            "slot": self.request.headers.get("kq_beat_slot"),
            "ran": time.time(),
        }
    )
    with open(os.path.join(os.environ["KQ_TEST_LEDGER_DIR"], f"ticks-{os.getpid()}.log"), "a") as f:
        f.write(line + "\n")
