"""Which worker each variant runs, spelled as its framework's own command line."""

from __future__ import annotations

import sys

import attrs

#: The ``-m`` module that is each framework's CLI, and how it names the app module.
_CLI = {
    "kq": ("kq", "worker", "-A", "kq_app:app", "-l", "warning"),
    # gossip, mingle and heartbeats are cluster features kq's worker does not have; switching
    # them off makes Celery start faster and send less, which only favours Celery.
    "celery": (
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-l",
        "warning",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ),
    "dramatiq": ("dramatiq", "dramatiq_app"),
}


@attrs.frozen
class WorkerSpec:
    """One worker configuration: a framework's CLI with pool and concurrency flags."""

    framework: str
    #: Short name used in result keys, e.g. ``prefork``.
    pool: str
    #: Pool flags for the CLI, e.g. ``("-P", "prefork", "-c", "2")``.
    flags: tuple[str, ...]
    #: Tasks the worker runs at once (processes x threads for Dramatiq).
    slots: int
    #: Extra words for the label, e.g. ``-O fair``.
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.framework}-{self.pool}" + (f"-{self.note.replace(' ', '')}" if self.note else "")

    @property
    def label(self) -> str:
        return f"{self.framework} {' '.join(self.flags)}" + (f" ({self.note})" if self.note else "")

    def command(self, queue: str) -> list[str]:
        """The argv that starts this worker on ``queue`` with the harness's Python."""
        queue_flag = ("-Q", queue)
        return [sys.executable, "-m", *_CLI[self.framework], *self.flags, *queue_flag]


def kq(pool: str, concurrency: int = 2, *extra: str, note: str = "") -> WorkerSpec:
    return WorkerSpec("kq", pool, ("-P", pool, "-c", str(concurrency), *extra), concurrency, note)


def celery(pool: str, concurrency: int = 2, *extra: str, note: str = "") -> WorkerSpec:
    return WorkerSpec("celery", pool, ("-P", pool, "-c", str(concurrency), *extra), concurrency, note)


def dramatiq(processes: int, threads: int) -> WorkerSpec:
    return WorkerSpec(
        "dramatiq", f"p{processes}t{threads}", ("-p", str(processes), "-t", str(threads)), processes * threads
    )
