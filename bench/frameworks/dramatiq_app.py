"""Dramatiq's side: the broker ``dramatiq dramatiq_app`` runs, and the client functions of
``kq_app`` where Dramatiq has the feature. Default middleware, plus Results when the run stores
results. Dramatiq acks a message after its actor returns (kq's and Celery's acks_late).
"""

from __future__ import annotations

import time
from typing import Any

import benchkit
import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

ENV = benchkit.run_env()
if ENV.on_redis:
    broker: Any = RedisBroker(url=ENV.broker_url, namespace=ENV.prefix + "dramatiq")
else:
    broker = RabbitmqBroker(url=ENV.broker_url)
if ENV.backend_url:
    # Prefixed keys (not Dramatiq's default md5 of them), so the harness can delete them.
    results = RedisBackend(
        url=ENV.backend_url, namespace=ENV.prefix + "dramatiq-results", use_namespace_prefix_keys=True
    )
    broker.add_middleware(Results(backend=results))
dramatiq.set_broker(broker)
_results = {"store_results": True} if ENV.backend_url else {}


@dramatiq.actor(queue_name=ENV.queue, actor_name="bench_count")
def count(key: str) -> None:
    benchkit.count(key)


@dramatiq.actor(queue_name=ENV.queue, actor_name="bench_sleep")
def sleep(seconds: float, published_at: float, key: str) -> None:
    benchkit.sleep_and_record(seconds, published_at, key)


@dramatiq.actor(queue_name=ENV.queue, actor_name="bench_add", **_results)
def add(x: int, y: int) -> int:
    return benchkit.add(x, y)


def send_count(key: str) -> None:
    count.send(key)


def send_group(key: str, n: int) -> None:
    dramatiq.group(count.message(key) for _ in range(n)).run()


BATCH = {"group": send_group}


def prepublish(key: str, n: int) -> None:
    for _ in range(n):
        count.send(key)


def depth() -> int:
    if ENV.on_redis:
        return broker.do_qsize(ENV.queue)
    return broker.get_queue_message_counts(ENV.queue)[0]


def roundtrip() -> int:
    return add.send(1, 2).get_result(block=True, timeout=30_000)


def send_sleep(seconds: float, key: str) -> None:
    sleep.send(seconds, time.time(), key)


def run_chord(n: int, timeout: float) -> int:
    raise benchkit.Unavailable(
        "Dramatiq has no chord: group completion callbacks (GroupCallbacks "
        "middleware) do not pass the header's results to the body"
    )


def close() -> None:
    broker.close()
