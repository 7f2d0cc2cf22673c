"""Task and worker events in Celery's format, broadcast for monitors (``kq events``, dashboards).

An event is a flat JSON object: its ``type`` (``task-received``, ``worker-heartbeat``, ...), the
fields of that type as Celery names them, and what every sender adds: ``hostname``, ``pid``,
``clock`` (the sending process's Lamport clock), ``timestamp`` (Unix seconds) and ``utcoffset``
(hours, with the sign of :data:`time.timezone`, as Celery sends it). A body holds one event or
a JSON list of them: the worker buffers the events of one loop turn and broadcasts them in one
message, a shape Celery's receivers also read. They go out on the :data:`CHANNEL` fan-out
channel; a monitor that is not subscribed misses them, as with Celery's ``celeryev`` exchange.

Events are off unless asked for (``kq worker -E``, ``task_send_sent_event``): then no
dispatcher exists and senders pay one ``is None`` test.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import Any

from .exceptions import BrokerUnavailable, ConfigurationError
from .protocol import TaskMessage
from .states import FAILURE, RETRY, REVOKED, SUCCESS
from .transport import Envelope

log = logging.getLogger("kq.events")

#: The fan-out channel events are broadcast on (the name of Celery's exchange).
CHANNEL = "celeryev"
CONTENT_TYPE = "application/json"
#: Seconds between a worker's heartbeats; monitors count a worker gone after 3 missed ones.
HEARTBEAT_INTERVAL = 2.0
_ENDED = {SUCCESS: "task-succeeded", FAILURE: "task-failed", RETRY: "task-retried", REVOKED: "task-revoked"}


class LamportClock:
    """A process's logical clock: every event it sends carries the next value, so a monitor can
    order the events of one sender even when their timestamps tie."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def forward(self) -> int:
        with self._lock:
            self._value += 1
            return self._value


#: Shared by every dispatcher of this process.
clock = LamportClock()


def utcoffset() -> int:
    """This machine's offset from UTC in whole hours, west positive (DST included)."""
    dst = time.daylight and time.localtime().tm_isdst > 0
    return (time.altzone if dst else time.timezone) // 3600


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


class EventDispatcher:
    """Builds events and broadcasts them through ``app`` (typed ``Any``: the app module sits
    above this one). ``buffered`` dispatchers keep events until :meth:`flush`; others send each
    at once. A broadcast that fails is logged and its events dropped: monitoring never stops
    the work it watches."""

    def __init__(self, app: Any, hostname: str, *, buffered: bool = False) -> None:
        if not app.plugins.transport_for(app.conf.broker_url).capabilities.fanout:
            raise ConfigurationError(
                "events need a broker with fan-out (kq-redis, kq-amqp, kq-sqlite); this one has none"
            )
        self.app = app
        self.hostname = hostname
        self._pid = os.getpid()
        self._offset = utcoffset()
        self._buffer: list[dict[str, Any]] | None = [] if buffered else None
        self._lock = threading.Lock()
        self._next_heartbeat = 0.0
        self._version = importlib.metadata.version("kq")

    def send(self, type_: str, **fields: Any) -> None:
        event = {
            **fields,
            "type": type_,
            "hostname": self.hostname,
            "pid": self._pid,
            "clock": clock.forward(),
            "timestamp": time.time(),
            "utcoffset": self._offset,
        }
        if self._buffer is None:
            self._publish([event])
        else:
            with self._lock:
                self._buffer.append(event)

    def flush(self) -> None:
        if not self._buffer:
            return
        with self._lock:
            batch, self._buffer = self._buffer, []
        self._publish(batch)

    def _publish(self, events: list[dict[str, Any]]) -> None:
        body = json.dumps(events[0] if len(events) == 1 else events, default=repr).encode()
        try:
            self.app.broadcast(CHANNEL, Envelope(body, CONTENT_TYPE))
        except (BrokerUnavailable, OSError) as exc:
            log.warning("kq: %d event(s) not sent: %s", len(events), exc)

    # -- task events ----------------------------------------------------------------------

    def task_sent(self, message: TaskMessage, queue: str) -> None:
        self.send("task-sent", **_task_fields(message), queue=queue)

    def task_received(self, message: TaskMessage) -> None:
        self.send("task-received", **_task_fields(message))

    def task_started(self, task_id: str) -> None:
        self.send("task-started", uuid=task_id)

    def task_ended(self, task_id: str, state: str, runtime: float, error: str | None) -> None:
        """The event of a job's outcome (see :class:`kq.pool.Outcome`); the exception is the
        one-line description the outcome carries, the traceback is in the result backend."""
        type_ = _ENDED.get(state)
        if type_ == "task-succeeded":
            self.send(type_, uuid=task_id, runtime=runtime)
        elif type_ == "task-revoked":
            self.send(type_, uuid=task_id, terminated=False, expired=error == "expired")
        elif type_ is not None:
            self.send(type_, uuid=task_id, exception=error, traceback=None, runtime=runtime)

    def task_rejected(self, task_id: str | None) -> None:
        self.send("task-rejected", uuid=task_id, requeue=False)

    # -- worker events --------------------------------------------------------------------

    def worker(self, type_: str, active: int = 0, processed: int = 0) -> None:
        """``worker-online``, ``worker-heartbeat`` or ``worker-offline``."""
        self.send(
            type_,
            freq=HEARTBEAT_INTERVAL,
            sw_ident="kq",
            sw_ver=self._version,
            sw_sys=platform.system(),
            active=active,
            processed=processed,
            loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
        )

    def tick(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Once per worker loop turn: a heartbeat when one is due (``counts`` gives the active
        and processed task counts), then the buffered events in one broadcast."""
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_INTERVAL
            self.worker("worker-heartbeat", *counts())
        self.flush()


def _task_fields(message: TaskMessage) -> dict[str, Any]:
    return {
        "uuid": message.id,
        "name": message.task,
        "args": message.argsrepr if message.argsrepr is not None else repr(message.args),
        "kwargs": (message.kwargsrepr if message.kwargsrepr is not None else repr(dict(message.kwargs))),
        "retries": message.retries,
        "eta": _iso(message.eta),
        "expires": _iso(message.expires),
        "root_id": message.root_id,
        "parent_id": message.parent_id,
    }
