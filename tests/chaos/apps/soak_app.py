"""The app the soak test runs in one real ``kq worker`` (configured through KQ_* variables).

Its task does as little as a task can while still going through the whole path the soak
measures: decode, run, store a result, ack. A leak anywhere on that path shows as growth.
"""

from kq import App

app = App("soak")


@app.task(name="soak.echo")
def echo(n: int) -> int:
    return n
