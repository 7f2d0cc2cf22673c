"""``kq result ID --follow``: watch a task's state until it is ready, drawing its progress.

A task reports progress with ``self.update_state(state="PROGRESS", meta={"current": 3,
"total": 10})`` (``done`` is read like ``current``); any meta with a number of done items and a
positive ``total`` is drawn as a bar, whatever the state is called.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from ..exceptions import TimeoutError as ResultTimeout
from ..states import PENDING, READY_STATES

BAR_WIDTH = 30


def progress_of(meta: Any) -> tuple[float, float] | None:
    """``(done, total)`` when ``meta`` reports progress, else ``None``."""
    if not isinstance(meta, Mapping):
        return None
    done, total = meta.get("current", meta.get("done")), meta.get("total")
    if isinstance(done, bool) or isinstance(total, bool):
        return None
    if not (isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0):
        return None
    return float(done), float(total)


def render(state: str, meta: Any) -> str:
    """One line for a state: a progress bar, or the state and its details."""
    progress = progress_of(meta)
    if progress is not None:
        done, total = progress
        share = min(max(done / total, 0.0), 1.0)
        filled = round(share * BAR_WIDTH)
        return f"{state} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {share:4.0%} {done:g}/{total:g}"
    return state if meta is None else f"{state}: {meta!r}"


def follow(app: Any, task_id: str, timeout: float, interval: float) -> str:
    """Print each new state (and progress) of ``task_id`` until it is ready; return that state.

    On a terminal a progress bar is redrawn in place; otherwise each change is a line of its
    own. Raises :class:`kq.exceptions.TimeoutError` if the task is not ready in ``timeout``.
    """
    deadline = time.monotonic() + timeout
    in_place = sys.stdout.isatty()
    last: tuple[str, Any] | None = None
    drawing = False
    while True:
        meta = app.read_result(task_id)
        state = meta.state if meta is not None else PENDING
        if state in READY_STATES:
            if drawing:
                click.echo()
            return state
        seen = (state, meta.result if meta is not None else None)
        if seen != last:
            line = render(*seen)
            bar = progress_of(seen[1]) is not None
            if in_place and bar:
                click.echo(f"\r{line}", nl=False)
            else:
                click.echo(("\n" if drawing else "") + line)
            drawing, last = in_place and bar, seen
        if time.monotonic() >= deadline:
            if drawing:
                click.echo()
            raise ResultTimeout(f"task {task_id} did not finish within {timeout} s (state {state})")
        time.sleep(interval)
