"""The worker: consumes task messages and runs them in a pool."""

from .worker import Worker, WorkerStats

__all__ = ["Worker", "WorkerStats"]
