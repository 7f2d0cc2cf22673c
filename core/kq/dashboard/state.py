"""What the dashboard knows and does: a :class:`~kq.monitor.Monitor` fed from the events channel,
queue depths sampled every second (kept for the depth chart), worker stats asked over remote
control every few seconds, and the actions its buttons take.

Two daemon threads keep the model current, each on a broker connection of its own; requests
only read it under a lock, so a slow broker never stalls a page load.
"""

from __future__ import annotations

import ast
import logging
import threading
import time
from collections import deque
from typing import Any

from ..config import safe_url
from ..control import broadcast
from ..events import CHANNEL
from ..monitor import RATE_WINDOW, STATES, Monitor, receive
from ..states import READY_STATES

log = logging.getLogger("kq.dashboard")

#: Depth samples kept per queue (one a second: five minutes of chart).
SAMPLES = 300
#: Seconds between ``stats`` inspections of the workers.
STATS_EVERY = 3.0
#: Tasks the task list returns at most.
LIST_LIMIT = 200


class NotFound(LookupError):
    """The task is neither in the events seen nor in the result backend."""


class Dashboard:
    """The model behind the page; ``app`` is the kq app whose broker and backend it watches."""

    def __init__(self, app: Any, queues: list[str] | None = None) -> None:
        self.app = app
        self.queues = queues or app.router.queues()
        self.monitor = Monitor()
        self.samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=SAMPLES)
        self.stats: dict[str, Any] = {}  # worker name -> its `inspect stats` reply
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, name="kq-dashboard-poll", daemon=True)]

    def start(self) -> None:
        """Subscribe to events before returning, so none sent after start is missed."""
        self._threads.append(
            threading.Thread(
                target=self._listen, args=(self._subscribe(),), name="kq-dashboard-events", daemon=True
            )
        )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    # -- background ---------------------------------------------------------------------

    def _subscribe(self) -> tuple[Any, str]:
        transport = self.app.new_transport()
        return transport, transport.subscribe(CHANNEL)

    def _listen(self, subscription: tuple[Any, str] | None) -> None:
        while not self._stop.is_set():
            try:
                transport, queue = subscription or self._subscribe()
                subscription = None
                try:
                    while not self._stop.is_set():
                        events = receive(transport, queue, 0.5)
                        now = time.time()
                        with self._lock:
                            for event in events:
                                self.monitor.add(event, now)
                finally:
                    transport.close()
            except Exception as exc:  # the broker went away: keep serving what we have
                log.warning("kq: dashboard event listener: %s; retrying", exc)
                self._stop.wait(2)

    def _poll(self) -> None:
        next_stats, transport = 0.0, None
        while not self._stop.is_set():
            try:
                transport = transport or self.app.new_transport()
                depths = {queue: transport.depth(queue) for queue in self.queues}
                with self._lock:
                    self.samples.append((time.time(), depths))
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + STATS_EVERY
                    stats = broadcast(self.app, "stats", timeout=0.5)
                    with self._lock:
                        self.stats = {
                            name: reply["ok"]
                            for name, reply in stats.items()
                            if isinstance(reply, dict) and isinstance(reply.get("ok"), dict)
                        }
            except Exception as exc:  # the broker went away: reconnect on the next turn
                log.warning("kq: dashboard poll: %s", exc)
                if transport is not None:
                    _close_quietly(transport)
                transport = None
            self._stop.wait(1.0)
        if transport is not None:
            _close_quietly(transport)

    # -- reading ------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Everything the page shows but the task list, as JSON-ready data."""
        now = time.time()
        with self._lock:
            monitor = self.monitor
            workers = {}
            for host, (seen, event) in monitor.workers.items():
                workers[host] = {
                    "name": host,
                    "online": monitor.online(seen, now),
                    "seen": seen or None,
                    "active": event.get("active"),
                    "processed": event.get("processed"),
                    "loadavg": event.get("loadavg"),
                    "sw_ver": event.get("sw_ver"),
                }
            for host, stats in self.stats.items():  # a worker without -E still answers stats
                entry = workers.setdefault(
                    host,
                    {
                        "name": host,
                        "online": True,
                        "seen": None,
                        "active": stats.get("running"),
                        "processed": None,
                        "loadavg": None,
                        "sw_ver": None,
                    },
                )
                entry["pool"] = stats.get("pool")
                entry["rate_limits"] = stats.get("rate_limits", {})
                entry["total"] = stats.get("total")
            samples, names = list(self.samples), monitor.names
            return {
                "broker": safe_url(self.app.conf.broker_url),
                "backend": safe_url(self.app.conf.result_backend),
                "events": monitor.received,
                "throughput": monitor.throughput(now),
                "window": RATE_WINDOW,
                "counts": {state: monitor.counts[state] for state in STATES.values()},
                "workers": sorted(workers.values(), key=lambda worker: worker["name"]),
                "queues": [
                    {"name": q, "depth": samples[-1][1].get(q) if samples else None} for q in self.queues
                ],
                "history": {
                    "times": [t for t, _ in samples],
                    "depths": {q: [depths.get(q) for _, depths in samples] for q in self.queues},
                },
                "failures": [
                    {
                        "id": e.get("uuid"),
                        "name": names.get(e.get("uuid", "")),
                        "exception": e.get("exception"),
                        "worker": e.get("hostname"),
                        "timestamp": e.get("timestamp"),
                    }
                    for e in monitor.failures
                ],
            }

    def tasks(self, state: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """The tasks seen, newest first, filtered by exact state and by a part of the name."""
        with self._lock:
            tasks = [dict(task) for task in reversed(self.monitor.tasks.values())]
        self._settle(tasks)
        if state:
            tasks = [task for task in tasks if task["state"] == state.upper()]
        if name:
            tasks = [task for task in tasks if name in (task["name"] or "")]
        return tasks[:LIST_LIMIT]

    def _settle(self, tasks: list[dict[str, Any]]) -> None:
        """Give unfinished tasks the final state the backend holds, if any: a task revoked while
        the broker holds it (a countdown) sends no event until it is due, but is marked REVOKED
        in the backend at once; and events can be missed, results are not."""
        unfinished = [task for task in tasks if task["state"] not in READY_STATES]
        url = self.app.conf.result_backend
        if not unfinished or not url or self.app.plugins.backend_for(url).capabilities.reply_to:
            return
        try:
            stored = self.app.backend.get_many([task["id"] for task in unfinished])
        except Exception as exc:
            log.debug("kq: dashboard could not read task states: %s", exc)
            return
        for task, result in zip(unfinished, stored, strict=True):
            if result is not None and result.state in READY_STATES:
                task["state"] = result.state

    def task(self, task_id: str) -> dict[str, Any]:
        """One task: what events said, and what the result backend holds (result or exception
        and traceback)."""
        with self._lock:
            seen = dict(self.monitor.tasks.get(task_id) or {})
        meta = self.app.read_result(task_id) if self.app.conf.result_backend else None
        if not seen and meta is None:
            raise NotFound(task_id)
        detail = {"id": task_id, **seen, "result": None, "traceback": None, "stored": None}
        if meta is not None:
            detail.update(
                stored=meta.state,
                result=_describe(meta.result),
                traceback=meta.traceback,
                date_done=meta.date_done.isoformat() if meta.date_done else None,
            )
            detail["name"] = detail.get("name") or meta.name
            detail["worker"] = detail.get("worker") or meta.worker
            if not seen or (seen["state"] not in READY_STATES and meta.state in READY_STATES):
                detail["state"] = meta.state
        return detail

    # -- acting -------------------------------------------------------------------------

    def revoke(self, task_id: str) -> None:
        self.app.revoke(task_id)

    def retry(self, task_id: str) -> str:
        """Send the task again under a new id, with the name and arguments it was sent with;
        the id of the new task. ValueError when they are not known (events carry arguments as
        their ``repr``, which only plain values survive)."""
        detail = self.task(task_id)
        if not detail.get("name"):
            raise ValueError(f"the name of task {task_id} is not known")
        try:
            args = ast.literal_eval(detail["args"]) if detail.get("args") else ()
            kwargs = ast.literal_eval(detail["kwargs"]) if detail.get("kwargs") else {}
        except (ValueError, SyntaxError):
            raise ValueError(
                f"the arguments of task {task_id} cannot be rebuilt from "
                f"{detail.get('args')} {detail.get('kwargs')}"
            ) from None
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
            raise ValueError(f"the arguments of task {task_id} are not a list and a mapping")
        sent_id: str = self.app.send_task(detail["name"], list(args), kwargs).id
        return sent_id

    def rate_limit(self, task: str, rate: str, destination: list[str] | None = None) -> dict[str, Any]:
        """Set ``task``'s per-worker rate limit on the workers (all, or those named); their
        replies by worker name."""
        return broadcast(
            self.app,
            "rate_limit",
            {"task_name": task, "rate_limit": rate},
            destination=destination,
            timeout=1.0,
        )


def _close_quietly(transport: Any) -> None:
    try:
        transport.close()
    except Exception as exc:
        log.debug("kq: dashboard: closing a broken connection: %s", exc)


def _describe(result: Any) -> str:
    """A stored result as text: ``Type: message`` for an exception, else the value's repr."""
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = ", ".join(map(str, message))
        return f"{result['exc_type']}: {message}"
    return repr(result)
