"""The app kq-gcs's end-to-end test runs in a real ``kq worker`` process; configured only
through ``KQ_*`` variables (the broker a SQLite file, the result backend the Cloud Storage emulator)."""

from kq import App

app = App("gcs-e2e")


@app.task(name="gcs.double")
def double(n: int) -> int:
    return n * 2


@app.task(name="gcs.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="gcs.fail")
def fail(message: str) -> None:
    raise ValueError(message)
