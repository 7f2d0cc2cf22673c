"""Races between spawned processes, for the contract tests that prove an operation atomic
across processes (counters, claims, the schedule store's lock and compare-and-set)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def run_in_children(target: Callable[..., None], per_child: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args, ready, out)`` in one spawned process per ``args`` (spawned, so each
    opens the plugin from its URL and inherits nothing), released together by the barrier
    ``ready``; return what each put on ``out``, failing on any error a child reported as text."""
    context = multiprocessing.get_context("spawn")
    ready, out = context.Barrier(len(per_child)), context.Queue()
    processes = [context.Process(target=target, daemon=True, args=(*args, ready, out)) for args in per_child]
    for process in processes:
        process.start()
    try:
        reports = [out.get(timeout=180) for _ in processes]
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [r for r in reports if isinstance(r, str)] == []
    return reports
