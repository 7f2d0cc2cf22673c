"""The app kq-gcpubsub's worker test runs in a real ``kq worker`` process; configured only
through ``KQ_*`` variables (the broker the Pub/Sub emulator, results in a SQLite file)."""

from kq import App

app = App("gcpubsub-e2e")


@app.task(name="gcpubsub.double")
def double(n: int) -> int:
    return n * 2
