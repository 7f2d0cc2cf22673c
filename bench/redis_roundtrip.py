"""kq on Redis: the ``add.delay(1, 2).get()`` round trip, and rough publish and drain rates.

Run from the repository root with a Redis at 127.0.0.1:6379 (or ``--url``)::

    python bench/redis_roundtrip.py [--calls 1000] [--tasks 20000] [--pool threads] [-c 4]

It starts a real ``kq worker`` process (this file is its app module), sends ``--calls`` tasks one
at a time and waits for each result, then prints the median and p99 of those round trips. Then
it publishes ``--tasks`` result-less no-op tasks one by one with no worker running, and times a
worker draining them. Every key lives under a prefix of its own, deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import redis

from kq import App
from kq.testing.worker import WorkerProcess

#: The worker process rebuilds the app from the same environment variables.
app = App("bench")


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    return None


def start_worker(args: argparse.Namespace, env: dict[str, str], logs: str) -> WorkerProcess:
    here = os.path.dirname(os.path.abspath(__file__))
    worker = WorkerProcess("redis_roundtrip:app", ["-P", args.pool, "-c", str(args.concurrency)],
                           env={**env, "PYTHONPATH": here}, cwd=here,
                           log_path=os.path.join(logs, f"worker-{uuid.uuid4().hex[:6]}.log"))
    return worker.start()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("-c", "--concurrency", type=int, default=4)
    args = parser.parse_args()
    prefix = f"kqbench-{uuid.uuid4().hex[:8]}:"
    options = json.dumps({"global_keyprefix": prefix})
    env = {"KQ_BROKER_URL": args.url, "KQ_RESULT_BACKEND": args.url,
           "KQ_BROKER_TRANSPORT_OPTIONS": options, "KQ_RESULT_BACKEND_OPTIONS": options}
    os.environ.update(env)  # this process's app reads them too
    server = redis.Redis.from_url(args.url)
    with tempfile.TemporaryDirectory(prefix="kq-bench-") as logs:
        try:
            run(args, env, logs, prefix, server)
        finally:
            app.close()
            keys = list(server.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                server.delete(*keys)
            server.close()


def run(args: argparse.Namespace, env: dict[str, str], logs: str, prefix: str,
        server: redis.Redis) -> None:
    """Time the round trips, then the publishing, then the draining."""
    worker = start_worker(args, env, logs)
    try:
        add.delay(1, 2).get(timeout=30)  # connect and warm up both ends
        times = []
        for _ in range(args.calls):
            start = time.perf_counter()
            assert add.delay(1, 2).get(timeout=30) == 3
            times.append(time.perf_counter() - start)
    finally:
        worker.stop()
    print(f"round trip add.delay(1, 2).get() x{args.calls}: "
          f"median {statistics.median(times) * 1e3:.2f} ms, "
          f"p99 {percentile(times, 0.99) * 1e3:.2f} ms")

    start = time.perf_counter()
    for _ in range(args.tasks):
        noop.delay()
    print(f"publish one by one: {args.tasks / (time.perf_counter() - start):,.0f} tasks/s")

    transport = app.new_transport()
    worker = start_worker(args, env, logs)
    try:
        start = time.perf_counter()
        while transport.depth("celery") or server.hlen(f"{prefix}unacked"):
            time.sleep(0.01)
        drained = time.perf_counter() - start
    finally:
        worker.stop()
        transport.close()
    print(f"drain by one worker ({args.pool} x{args.concurrency}): "
          f"{args.tasks / drained:,.0f} tasks/s")


if __name__ == "__main__":
    sys.exit(main())
