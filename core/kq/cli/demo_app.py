"""The app ``kq demo`` runs: a few small tasks, configured entirely by KQ_* variables."""

from __future__ import annotations

import os

from ..app import App

app = App("kq.demo")


@app.task(name="demo.add")
def add(x: int, y: int) -> int:
    """Add two numbers (the demo's main task)."""
    return x + y


@app.task(name="demo.whoami")
def whoami() -> int:
    """The worker's process id, to show that tasks run in another process."""
    return os.getpid()
