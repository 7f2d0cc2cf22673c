"""The app kq-azureblob's end-to-end test runs in a real ``kq worker`` process; configured only
through ``KQ_*`` variables (the broker a SQLite file, the result backend Azurite)."""

from kq import App

app = App("azureblob-e2e")


@app.task(name="azblob.double")
def double(n: int) -> int:
    return n * 2


@app.task(name="azblob.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="azblob.fail")
def fail(message: str) -> None:
    raise ValueError(message)
