"""What a worker counts for its metrics: tasks by name and state, and their runtimes.

Only the worker's loop thread writes :class:`TaskMetrics`, with plain integer increments and no
lock; the probe server's threads (:mod:`kq.worker.probes`) read it, and a scrape may see a count
one task behind, which a monotonic counter tolerates.
"""

from __future__ import annotations

import bisect

from ..states import FAILURE, RETRY, REVOKED, SUCCESS

#: The ``state`` label of ``kq_tasks_total``, in the order of the indexes below.
STATES = ("received", "started", "succeeded", "failed", "retried", "revoked", "rejected")
RECEIVED, STARTED, SUCCEEDED, FAILED, RETRIED, REVOKED_, REJECTED = range(len(STATES))
_ENDED = {SUCCESS: SUCCEEDED, FAILURE: FAILED, RETRY: RETRIED, REVOKED: REVOKED_}
#: Upper bounds (seconds) of the runtime histogram's buckets, +Inf implied.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TaskMetrics:
    """Per task name: counts by state, and a histogram of the runtimes of tasks that ran."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        #: Per task: a count per bucket (not cumulative; the last is +Inf), then the sum.
        self._runtimes: dict[str, list[float]] = {}

    def count(self, task: str, state: int) -> None:
        counts = self._counts.get(task)
        if counts is None:
            counts = self._counts[task] = [0] * len(STATES)
        counts[state] += 1

    def ended(self, task: str, state: str, runtime: float) -> None:
        """Count a task's outcome; its runtime too, unless it was revoked before it ran."""
        index = _ENDED.get(state)
        if index is None:
            return
        self.count(task, index)
        if index != REVOKED_:
            runtimes = self._runtimes.get(task)
            if runtimes is None:
                runtimes = self._runtimes[task] = [0] * (len(BUCKETS) + 2)
            runtimes[bisect.bisect_left(BUCKETS, runtime)] += 1
            runtimes[-1] += runtime

    def counts(self) -> dict[str, list[int]]:
        """A copy, safe to read while the loop thread goes on counting."""
        return {task: list(counts) for task, counts in list(self._counts.items())}

    def runtimes(self) -> dict[str, list[float]]:
        return {task: list(values) for task, values in list(self._runtimes.items())}
