"""The tasks the canvas needs in every worker, registered on each app by kq's built-in plugin
(``kq_app_configure``): Celery's ``celery.map`` and ``celery.starmap`` under Celery's names (so
maps and chunks sent by Celery clients run on kq workers too), and ``kq.chord_unlock``, the
fallback for result backends without counters.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import NotRegistered
from . import chords
from .continuation import resolve


def _task(app: Any, signature: Any) -> Any:
    name = signature.get("task") if isinstance(signature, Mapping) else None
    task = app.tasks.get(name) if isinstance(name, str) else None
    if task is None:
        raise NotRegistered(f"task {name!r} is not registered in this worker")
    return task


def map_items(self: Any, task: Mapping[str, Any], it: Sequence[Any]) -> list[Any]:
    """``task(item)`` for each item, here, in order."""
    run = _task(self.app, task)
    return [run(item) for item in it]


def starmap_items(self: Any, task: Mapping[str, Any], it: Sequence[Sequence[Any]]) -> list[Any]:
    """``task(*item)`` for each item, here, in order."""
    run = _task(self.app, task)
    return [run(*item) for item in it]


def chord_unlock(self: Any, group_id: str, body: Mapping[str, Any], deadline: float, interval: float) -> None:
    """Settle a chord on a backend without counters: look at its header once; if it is still
    running, look again later (backing off) until its deadline, then fail the chord."""
    if time.time() >= deadline:  # before reading: the member record expires at the deadline
        settled = chords.unlock_timed_out(group_id, body, deadline)
    else:
        found = chords.outcome(self.app, group_id, body)
        if found is None:
            self.apply_async(
                (group_id, body, deadline, min(interval * 1.5, chords.UNLOCK_MAX)),
                countdown=interval,
                ignore_result=True,
            )
            return
        settled = found
    resolve(self.app, settled)


def register(app: Any) -> None:
    """Register the canvas's tasks on ``app`` (again after reconfiguring: same functions)."""
    app.task(name="celery.map", bind=True, typing=False)(map_items)
    app.task(name="celery.starmap", bind=True, typing=False)(starmap_items)
    app.task(name=chords.UNLOCK_TASK, bind=True, ignore_result=True)(chord_unlock)
