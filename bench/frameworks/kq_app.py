"""kq's side: the app ``kq worker -A kq_app:app`` runs, and the client calls the harness times.

Every module in this directory offers the same client functions (see ``client.py``), each doing
one thing with its framework's documented API and nothing else.
"""

from __future__ import annotations

import time

import benchkit

from kq import App, chord, group

ENV = benchkit.run_env()
_prefix = {"global_keyprefix": ENV.prefix}
app = App(
    "bench",
    broker=ENV.broker_url,
    backend=ENV.backend_url or None,
    broker_transport_options=_prefix if ENV.on_redis else {},
    result_backend_options=_prefix if ENV.backend_url.startswith("redis") else {},
    task_default_queue=ENV.queue,
    task_acks_late=ENV.acks_late,
)


@app.task(name="bench.count", ignore_result=True)
def count(key: str) -> None:
    benchkit.count(key)


@app.task(name="bench.sleep", ignore_result=True)
def sleep(seconds: float, published_at: float, key: str) -> None:
    benchkit.sleep_and_record(seconds, published_at, key)


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return benchkit.add(x, y)


@app.task(name="bench.total")
def total(values: list[int]) -> int:
    return benchkit.total(values)


def send_count(key: str) -> None:
    count.delay(key)


def send_many(key: str, n: int) -> None:
    app.send_many([count.s(key) for _ in range(n)])


def send_group(key: str, n: int) -> None:
    group(count.s(key) for _ in range(n)).apply_async()


BATCH = {"send_many": send_many, "group": send_group}


def prepublish(key: str, n: int) -> None:
    """Fill the queue for a drain: ``send_many`` in batches of 1,000."""
    for start in range(0, n, 1000):
        send_many(key, min(1000, n - start))


def depth() -> int:
    transport = app.new_transport()
    try:
        return transport.depth(ENV.queue)
    finally:
        transport.close()


def roundtrip() -> int:
    return add.delay(1, 2).get(timeout=30)


def send_sleep(seconds: float, key: str) -> None:
    sleep.delay(seconds, time.time(), key)


def run_chord(n: int, timeout: float) -> int:
    return chord(add.s(i, i) for i in range(n))(total.s()).get(timeout=timeout)


def close() -> None:
    app.close()
