"""The client process: ``python client.py FRAMEWORK OPERATION PARAMS_JSON OUT_JSON``.

It imports ``<FRAMEWORK>_app`` (and so only that framework), runs one operation with the
module's client functions, and writes what it measured to ``OUT_JSON``. The harness itself
imports no framework, so no two frameworks ever share a process. Every operation checks its
outcome (queue depth, return values) and exits non-zero when it is wrong; a feature the
framework lacks is written as ``{"unavailable": reason}``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import benchkit


def expect_depth(mod: ModuleType, expected: int, wait: float = 10.0) -> None:
    """The queue holds exactly what was published (RabbitMQ may take a moment to count it)."""
    deadline = time.monotonic() + wait
    while (found := mod.depth()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"queue depth is {found}, expected {expected}")
        time.sleep(0.05)


def _timed_calls(call: Callable[[], Any], n: int) -> tuple[float, list[int]]:
    """Call ``n`` times; the total seconds and each call's nanoseconds."""
    times = []
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(n):
        before = clock()
        call()
        times.append(clock() - before)
    return (clock() - start) / 1e9, times


def _summary(seconds: float, items: int, times: list[int]) -> dict[str, float]:
    return {
        "seconds": seconds,
        "rate": items / seconds,
        "p50_us": benchkit.percentile(times, 0.5) / 1e3,
        "p99_us": benchkit.percentile(times, 0.99) / 1e3,
    }


def publish_each(mod: ModuleType, n: int, warmup: int, key: str) -> dict[str, float]:
    """``n`` publishes one call at a time on one connection, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        mod.send_count(key)
    seconds, times = _timed_calls(lambda: mod.send_count(key), n)
    expect_depth(mod, warmup + n)
    return _summary(seconds, n, times)


def publish_batch(mod: ModuleType, n: int, size: int, api: str, key: str) -> dict[str, float]:
    """``n`` publishes in batches of ``size`` through the batch API ``api``, after one untimed."""
    send = mod.BATCH.get(api)
    if send is None:
        raise benchkit.Unavailable(f"{mod.__name__} has no {api} batch API")
    send(key, size)
    seconds, times = _timed_calls(lambda: send(key, size), n // size)
    expect_depth(mod, size + n // size * size)
    return _summary(seconds, n // size * size, times)


def prepublish(mod: ModuleType, n: int, key: str, check: bool = True) -> dict[str, float]:
    """Fill the queue with the framework's normal publish (``check``: for a worker to start on)."""
    start = time.perf_counter()
    mod.prepublish(key, n)
    seconds = time.perf_counter() - start
    if check:
        expect_depth(mod, n)
    return {"seconds": seconds, "rate": n / seconds}


def roundtrip(mod: ModuleType, n: int, warmup: int) -> dict[str, float]:
    """``n`` sequential ``add.delay(1, 2).get()`` (or the framework's spelling)."""
    results: list[int] = []
    for _ in range(warmup):
        results.append(mod.roundtrip())
    seconds, times = _timed_calls(lambda: results.append(mod.roundtrip()), n)
    if results != [3] * (warmup + n):
        raise AssertionError(f"wrong results: {sorted(set(results))}")
    return _summary(seconds, n, times)


def fairness(
    mod: ModuleType, long_s: float, shorts: int, short_s: float, key: str, ready_key: str
) -> dict[str, float]:
    """Once the worker runs tasks, publish one long task and then ``shorts`` short ones."""
    mod.send_count(ready_key)
    deadline = time.monotonic() + 60
    while benchkit.recorder().get(ready_key) is None:
        if time.monotonic() > deadline:
            raise AssertionError("the worker ran no task within 60 s")
        time.sleep(0.005)
    mod.send_sleep(long_s, key)
    for _ in range(shorts):
        mod.send_sleep(short_s, key)
    return {"published": shorts + 1}


def chord(mod: ModuleType, n: int, wait: float, warmup: int) -> dict[str, float]:
    """A chord of ``n`` ``add(i, i)`` with a body summing them, once the worker is warm."""
    for _ in range(warmup):
        mod.roundtrip()
    start = time.perf_counter()
    value = mod.run_chord(n, wait)
    seconds = time.perf_counter() - start
    if value != n * (n - 1):
        raise AssertionError(f"chord returned {value}, expected {n * (n - 1)}")
    return {"seconds": seconds}


OPERATIONS: dict[str, Callable[..., dict[str, float]]] = {
    f.__name__: f for f in (publish_each, publish_batch, prepublish, roundtrip, fairness, chord)
}


def main(framework: str, operation: str, params: str, out: str) -> None:
    mod = importlib.import_module(f"{framework}_app")
    try:
        outcome: dict[str, Any] = OPERATIONS[operation](mod, **json.loads(params))
    except benchkit.Unavailable as exc:
        outcome = {"unavailable": str(exc)}
    finally:
        mod.close()
    with open(out, "w") as f:
        json.dump(outcome, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
