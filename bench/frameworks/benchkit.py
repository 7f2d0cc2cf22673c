"""What the benchmark's app modules share with each other and with the harness.

The harness starts every worker and every client as a separate process; this module carries the
settings of one run to them through ``BENCH_*`` environment variables, and gives tasks the Redis
connection they use to prove they ran (a counter, or a record per task).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Mapping

import attrs
import redis


class Unavailable(Exception):  # noqa: N818 - a state, not an error: the doc shows the reason
    """The framework under test has no such feature (yet); the scenario reports why, not a number."""


@attrs.frozen(kw_only=True)
class RunEnv:
    """The settings of one measured run, the same for the harness, its workers and its clients."""

    #: Broker URL (Redis or RabbitMQ).
    broker_url: str
    #: Result backend URL; empty when the run stores no results.
    backend_url: str = ""
    #: The Redis where tasks count and record themselves.
    record_url: str
    #: Prepended to every Redis key of this run (kq/Celery ``global_keyprefix``, Dramatiq namespace).
    prefix: str
    #: The queue every task of this run goes to and every worker consumes.
    queue: str
    #: Ack after the task instead of before (kq ``task_acks_late``, Celery ``task_acks_late``).
    acks_late: bool = False
    #: Wait for RabbitMQ publisher confirms where that is an option (Celery ``confirm_publish``).
    confirm: bool = False

    @property
    def on_redis(self) -> bool:
        return self.broker_url.startswith("redis")

    def environ(self) -> dict[str, str]:
        return {"BENCH_RUN": json.dumps(attrs.asdict(self))}

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> RunEnv:
        return cls(**json.loads(environ["BENCH_RUN"]))


_recorder: tuple[int, redis.Redis] | None = None


@functools.cache
def run_env() -> RunEnv:
    if "BENCH_RUN" not in os.environ:
        raise RuntimeError("BENCH_RUN is not set: the app modules run in processes bench/run.py starts")
    return RunEnv.load()


def recorder() -> redis.Redis:
    """This process's connection to the record Redis (a new one after a fork)."""
    global _recorder
    if _recorder is None or _recorder[0] != os.getpid():
        _recorder = (os.getpid(), redis.Redis.from_url(run_env().record_url))
    return _recorder[1]


def record_key(name: str) -> str:
    return run_env().prefix + "rec:" + name


def count(key: str) -> None:
    """The body of every drain task: one INCR, so the harness can check that exactly N ran."""
    recorder().incr(key)


def sleep_and_record(seconds: float, published_at: float, key: str) -> None:
    """The body of the fairness tasks: sleep, then record publish, start and finish times."""
    started = time.time()
    time.sleep(seconds)
    recorder().rpush(key, json.dumps([seconds, published_at, started, time.time()]))


def add(x: int, y: int) -> int:
    return x + y


def total(values: list[int]) -> int:
    return sum(values)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.5 is the median of an odd-sized sample)."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1]
