"""A live model of the fleet built from events: workers, task counts, throughput, recent tasks
and failures. ``kq events`` draws it in a terminal and ``kq dashboard`` serves it as JSON, so
both read the same events the same way.

It only reads events (see :mod:`kq.events`); it never asks a worker anything, so a monitor
costs the fleet nothing beyond the broadcasts the workers already send with ``-E``.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from typing import Any

from .events import HEARTBEAT_INTERVAL
from .transport import Transport

#: Heartbeats a worker may miss before a monitor calls it offline.
MISSED_HEARTBEATS = 3
#: Seconds of history the throughput is averaged over.
RATE_WINDOW = 10.0
#: Task event types, and the state counted (and shown, upper-cased) for each.
STATES = {
    "task-sent": "sent",
    "task-received": "received",
    "task-started": "started",
    "task-succeeded": "succeeded",
    "task-failed": "failed",
    "task-retried": "retried",
    "task-revoked": "revoked",
    "task-rejected": "rejected",
}
#: The state a task is shown in after each event, in Celery's names.
TASK_STATES = {
    "task-sent": "PENDING",
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-retried": "RETRY",
    "task-revoked": "REVOKED",
    "task-rejected": "REJECTED",
}
_ENDED = ("task-succeeded", "task-failed", "task-retried", "task-revoked", "task-rejected")
#: Tasks a monitor remembers; the oldest are forgotten first.
MAX_TASKS = 1000


def decode(body: bytes) -> list[dict[str, Any]]:
    """The events of one broadcast body (one event, or a list); malformed bodies give none."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    events = data if isinstance(data, list) else [data]
    return [event for event in events if isinstance(event, dict) and "type" in event]


def receive(transport: Transport, queue: str, timeout: float) -> list[dict[str, Any]]:
    """The events that arrive on ``queue`` (a subscription to the events channel) within
    ``timeout`` seconds, acknowledged."""
    deliveries = transport.fetch([queue], 100, timeout)
    if deliveries:
        transport.ack(deliveries)
    return [event for delivery in deliveries for event in decode(delivery.envelope.body)]


class Monitor:
    """The fleet as events describe it. Times are the monitor's own clock (``now``), not the
    senders', so a worker with a skewed clock is still judged alive correctly."""

    def __init__(self) -> None:
        self.workers: dict[str, tuple[float, dict[str, Any]]] = {}  # host -> (seen, event)
        self.counts: Counter[str] = Counter()
        self.ended: deque[float] = deque()  # local times tasks ended, for tasks/s
        self.failures: deque[dict[str, Any]] = deque(maxlen=10)
        self.tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()  # id -> what is known
        self.received = 0  # events seen, so a page can say when none arrive

    @property
    def names(self) -> dict[str, str]:
        return {task_id: task["name"] for task_id, task in self.tasks.items() if task.get("name")}

    def add(self, event: dict[str, Any], now: float) -> None:
        self.received += 1
        kind, host = event["type"], event.get("hostname", "?")
        if kind.startswith("worker-"):
            self.workers[host] = (0.0 if kind == "worker-offline" else now, event)
            return
        if kind != "task-sent":  # any event of a worker shows it alive
            self.workers[host] = (now, self.workers.get(host, (now, {}))[1])
        if kind in STATES:
            self.counts[STATES[kind]] += 1
            self._track(event, kind, host, now)
        if kind in _ENDED:
            self.ended.append(now)
        if kind == "task-failed":
            self.failures.appendleft(event)

    def _track(self, event: dict[str, Any], kind: str, host: str, now: float) -> None:
        task_id = event.get("uuid")
        if not task_id:
            return
        task = self.tasks.pop(task_id, None) or {
            "id": task_id,
            "name": None,
            "worker": None,
            "runtime": None,
            "args": None,
            "kwargs": None,
            "exception": None,
            "sent": None,
        }
        self.tasks[task_id] = task  # most recently touched last
        if kind != "task-sent" or "state" not in task:  # the client's task-sent may come last
            task["state"] = TASK_STATES[kind]
        task["updated"] = now
        for field in ("name", "args", "kwargs", "runtime", "exception", "eta"):
            if event.get(field) is not None:
                task[field] = event[field]
        if kind == "task-sent":
            task["sent"] = now
        else:
            task["worker"] = host
        while len(self.tasks) > MAX_TASKS:
            self.tasks.popitem(last=False)

    def throughput(self, now: float) -> float:
        """Tasks ended per second over the last :data:`RATE_WINDOW` seconds."""
        while self.ended and self.ended[0] < now - RATE_WINDOW:
            self.ended.popleft()
        return len(self.ended) / RATE_WINDOW

    def online(self, seen: float, now: float) -> bool:
        return seen >= now - HEARTBEAT_INTERVAL * MISSED_HEARTBEATS
