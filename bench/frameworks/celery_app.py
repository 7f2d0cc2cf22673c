"""Celery's side: the app ``celery -A celery_app worker`` runs, and the same client functions as
``kq_app`` with Celery's API. Settings are Celery's defaults except where the harness documents
otherwise (queue name, key prefix, and the acks_late/confirm switches some scenarios turn on).
"""

from __future__ import annotations

import time

import benchkit
from celery import Celery, chord, group

ENV = benchkit.run_env()
app = Celery("bench", broker=ENV.broker_url, backend=ENV.backend_url or None)
app.conf.update(
    task_default_queue=ENV.queue,
    task_acks_late=ENV.acks_late,
    broker_connection_retry_on_startup=True,
    broker_transport_options=(
        {"global_keyprefix": ENV.prefix} if ENV.on_redis else {"confirm_publish": ENV.confirm}
    ),
    result_backend_transport_options={"global_keyprefix": ENV.prefix},
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


def send_group(key: str, n: int) -> None:
    group(count.s(key) for _ in range(n)).apply_async()


BATCH = {"group": send_group}


def prepublish(key: str, n: int) -> None:
    """Fill the queue for a drain with Celery's normal publish (it has no batch API)."""
    for _ in range(n):
        count.delay(key)


def depth() -> int:
    # A passive declare on kombu's Redis transport misses queues under a global_keyprefix; an
    # active one only re-adds the binding Celery made when it published.
    with app.connection_for_read() as connection:
        declared = connection.default_channel.queue_declare(queue=ENV.queue, passive=not ENV.on_redis)
        return declared.message_count


def roundtrip() -> int:
    return add.delay(1, 2).get(timeout=30)


def send_sleep(seconds: float, key: str) -> None:
    sleep.delay(seconds, time.time(), key)


def run_chord(n: int, timeout: float) -> int:
    return chord(add.s(i, i) for i in range(n))(total.s()).get(timeout=timeout)


def close() -> None:
    app.close()
