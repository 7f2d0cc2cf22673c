"""A worker's answers to remote-control commands (``kq inspect``, ``kq control``).

Commands arrive in the broadcast listener's thread (:mod:`kq.listener`). Inspections answer
there at once from snapshots of the worker's state (copying a deque, list or dict is atomic
under the GIL), so that a worker blocked in a one-second fetch still answers within a client's
one-second timeout. Commands that change the worker are checked there too and answered at
once, but their change is queued for the consumer thread, which owns that state and applies it
at its next step (within a second). A malformed command is logged in one line and ignored.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..config import safe_url
from ..control import CHANNEL, CONTENT_TYPE, Command, Reply
from ..listener import Handler
from ..pool import Job
from ..ratelimit import Throttle, parse_rate
from ..revoke import Revoke, signal_name
from ..transport import Envelope
from .autoscale import Autoscaler

log = logging.getLogger("kq.worker")


def describe(job: Job, started: float | None = None) -> dict[str, Any]:
    """A job as ``kq inspect`` shows it (JSON-ready; arguments as their repr, never values)."""
    message = job.message
    info: dict[str, Any] = {
        "id": message.id,
        "name": message.task,
        "args": message.argsrepr if message.argsrepr is not None else repr(message.args),
        "kwargs": message.kwargsrepr if message.kwargsrepr is not None else repr(dict(message.kwargs)),
        "queue": job.queue,
        "worker_pid": os.getpid(),
    }
    if started is not None:
        info["started"] = started
    if message.eta is not None:
        info["eta"] = message.eta.isoformat()
    return info


class ControlHandlers:
    """The commands one worker answers. See :mod:`kq.control` for the wire format."""

    def __init__(self, worker: Any) -> None:
        #: The :class:`kq.worker.worker.Worker` (typed ``Any``: the worker module imports this
        #: one, and imports go one way).
        self.worker = worker
        self.started = time.time()
        self._methods: dict[str, Callable[..., Any]] = {
            name: getattr(self, name)
            for name in (
                "ping",
                "active",
                "reserved",
                "scheduled",
                "registered",
                "stats",
                "active_queues",
                "revoke",
                "rate_limit",
                "time_limit",
                "shutdown",
                "pool_grow",
                "pool_shrink",
                "autoscale",
                "add_consumer",
                "cancel_consumer",
            )
        }

    @property
    def handlers(self) -> dict[str, Handler]:
        """What the worker's listener subscribes to for remote control."""
        return {CHANNEL: self.heard}

    def heard(self, body: bytes) -> None:
        """Answer one broadcast command, if it is for this worker."""
        try:
            command = Command.decode(body)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("kq: ignored a malformed control command: %s", exc)
            return
        if not command.is_for(self.worker.hostname):
            return
        method = self._methods.get(command.method)
        if method is None:
            reply: Any = {"error": f"unknown command {command.method!r}"}
        else:
            try:
                reply = {"ok": method(**command.arguments)}
            except Exception as exc:  # bad arguments included: the client reads why
                reply = {"error": str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"}
        body = Reply(command.id, self.worker.hostname, reply).encode()
        self.worker.app.broadcast(command.reply_to, Envelope(body, CONTENT_TYPE))

    def _later(self, change: Callable[[], None]) -> None:
        """Apply ``change`` in the consumer thread at its next step."""
        self.worker._inbox.put(change)

    # -- inspect ------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"pong": True, "pid": os.getpid(), "uptime": round(time.time() - self.started, 3)}

    def active(self) -> list[dict[str, Any]]:
        return [describe(job, started) for job, started in list(self.worker._active.values())]

    def reserved(self) -> list[dict[str, Any]]:
        worker = self.worker
        throttled = worker._throttle.held() if worker._throttle is not None else []
        return [describe(job) for job in [*tuple(worker._reserved), *throttled]]

    def scheduled(self) -> list[dict[str, Any]]:
        return [describe(job) for _, _, job in sorted(list(self.worker._held))]

    def registered(self) -> list[str]:
        return sorted(self.worker.app.tasks)

    def stats(self) -> dict[str, Any]:
        worker, counts = self.worker, self.worker.stats
        return {
            "hostname": worker.hostname,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
            "broker": safe_url(worker.app.conf.broker_url),
            "pool": {
                "name": worker.pool_name,
                "concurrency": worker.concurrency,
                "max_concurrency": worker.max_concurrency,
                "autoscale": None
                if worker.autoscaler is None
                else [worker.autoscaler.maximum, worker.autoscaler.minimum],
            },
            "prefetch_multiplier": worker.prefetch_multiplier,
            "prefetch_limit": worker.max_concurrency * (1 + worker.prefetch_multiplier),
            "running": worker.running_count,
            "reserved": worker.reserved_count,
            "rate_limits": worker._throttle.rates() if worker._throttle is not None else {},
            "total": {
                "received": counts.received,
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "revoked": counts.revoked,
                "rejected": counts.rejected,
            },
            "rejected_by_reason": dict(counts.rejected_by_reason),
        }

    def active_queues(self) -> list[dict[str, Any]]:
        return [{"name": queue} for queue in self.worker.queues]

    # -- control ------------------------------------------------------------------------------

    def revoke(self, task_ids: list[str], terminate: bool = False, signal: str = "SIGTERM") -> str:
        """This worker only, and not persisted: ``App.revoke`` reaches every worker."""
        revoke = Revoke(
            task_ids if not isinstance(task_ids, str) else [task_ids], bool(terminate), signal_name(signal)
        )
        self.worker._revocations.heard(revoke.encode())
        return f"revoked {', '.join(revoke.task_ids)}"

    def rate_limit(self, task_name: str, rate_limit: str | float | None) -> str:
        """Change a task's per-worker rate limit here; ``None`` (or "none") removes it."""
        self._task(task_name)
        rate = None if rate_limit is None or rate_limit == "none" else parse_rate(rate_limit)

        def change() -> None:
            worker = self.worker
            if worker._throttle is None:
                worker._throttle = Throttle({})
            worker._throttle.set_rate(task_name, rate)

        self._later(change)
        return f"rate limit of {task_name} set to {rate or 'none'}"

    def time_limit(self, task_name: str, soft: float | None = None, hard: float | None = None) -> str:
        """Change a task's time limits for the messages that start from now on."""
        task = self._task(task_name)
        caps = self.worker.pool_spec.capabilities
        for name, value, able in (("soft", soft, caps.soft_time_limit), ("hard", hard, caps.hard_time_limit)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number of seconds above 0, got {value!r}")
            if value is not None and not able:
                raise ValueError(f"the {self.worker.pool_name} pool cannot enforce a {name} time limit")

        def change() -> None:  # the worker reads these as each job is made
            task._soft_time_limit, task._time_limit = soft, hard

        self._later(change)
        return f"time limits of {task_name} set to soft {soft}, hard {hard}"

    def shutdown(self) -> str:
        self.worker.stop()
        return "warm shutdown started"

    def pool_grow(self, n: int = 1) -> str:
        self._resizable(n)

        def change() -> None:
            worker = self.worker
            worker.pool.grow(n)
            worker.concurrency = worker.pool.concurrency
            worker.max_concurrency = max(worker.max_concurrency, worker.concurrency)
            if worker.autoscaler is not None:
                worker.autoscaler.maximum = worker.max_concurrency

        self._later(change)
        return f"pool grows by {n}"

    def pool_shrink(self, n: int = 1) -> str:
        self._resizable(n)

        def change() -> None:
            worker = self.worker
            worker.pool.shrink(n)
            worker.concurrency = worker.pool.concurrency
            if worker.autoscaler is not None:
                worker.autoscaler.minimum = min(worker.autoscaler.minimum, worker.concurrency)

        self._later(change)
        return f"pool shrinks by {n}"

    def autoscale(self, max: int, min: int) -> str:  # noqa: A002 - Celery's argument names
        self._resizable(max)
        if not isinstance(min, int) or not 1 <= min <= max:
            raise ValueError(f"autoscale needs 1 <= min <= max, got max {max!r}, min {min!r}")

        def change() -> None:
            worker = self.worker
            if worker.autoscaler is None:
                worker.autoscaler = Autoscaler(worker.pool, max, min)
            else:
                worker.autoscaler.maximum, worker.autoscaler.minimum = max, min
            worker.max_concurrency = max

        self._later(change)
        return f"autoscale set to max {max}, min {min}"

    def add_consumer(self, queue: str) -> str:
        self._queue_name(queue)
        if queue in self.worker.queues:
            return f"already consuming from {queue}"

        def change() -> None:
            if queue not in self.worker.queues:
                self.worker.queues = [*self.worker.queues, queue]

        self._later(change)
        return f"consuming from {queue}"

    def cancel_consumer(self, queue: str) -> str:
        self._queue_name(queue)
        if queue not in self.worker.queues:
            raise ValueError(f"not consuming from {queue}")
        if len(self.worker.queues) == 1:
            raise ValueError(f"{queue} is the only queue this worker consumes; stop it instead")

        def change() -> None:
            remaining = [q for q in self.worker.queues if q != queue]
            if remaining:
                self.worker.queues = remaining

        self._later(change)
        return f"no longer consuming from {queue}"

    # -- checks -------------------------------------------------------------------------------

    def _task(self, name: str) -> Any:
        task = self.worker.app.tasks.get(name) if isinstance(name, str) else None
        if task is None:
            raise ValueError(f"task {name!r} is not registered here")
        return task

    def _resizable(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"expected a whole number above 0, got {n!r}")
        if not self.worker.pool_spec.capabilities.autoscale:
            raise ValueError(f"the {self.worker.pool_name} pool cannot be resized")

    @staticmethod
    def _queue_name(queue: str) -> None:
        if not isinstance(queue, str) or not queue:
            raise ValueError(f"expected a queue name, got {queue!r}")
