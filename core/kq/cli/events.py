"""``kq events``: watch the events workers (``kq worker -E``) and clients broadcast.

The live view is redrawn in place every second with plain ANSI escapes (no curses), so it works
in any terminal and in ``watch``-less containers; ``--dump`` prints one JSON line per event
instead, for piping and tests.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, deque
from typing import Any

import click

from ..events import CHANNEL, HEARTBEAT_INTERVAL
from ..exceptions import ConfigurationError
from .common import app_options, make_app

#: Heartbeats a worker may miss before the view calls it offline.
MISSED_HEARTBEATS = 3
#: Seconds of history the throughput is averaged over.
RATE_WINDOW = 10.0
#: Task event types, and the state the view counts each under.
STATES = {"task-sent": "sent", "task-received": "received", "task-started": "started",
          "task-succeeded": "succeeded", "task-failed": "failed", "task-retried": "retried",
          "task-revoked": "revoked", "task-rejected": "rejected"}
_ENDED = ("task-succeeded", "task-failed", "task-retried", "task-revoked", "task-rejected")
CLEAR = "\x1b[H\x1b[2J"


def decode(body: bytes) -> list[dict[str, Any]]:
    """The events of one broadcast body (one event, or a list); malformed bodies give none."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    events = data if isinstance(data, list) else [data]
    return [event for event in events if isinstance(event, dict) and "type" in event]


class View:
    """What the live view shows, updated from events as they arrive."""

    def __init__(self) -> None:
        self.workers: dict[str, tuple[float, dict[str, Any]]] = {}  # host -> (seen, event)
        self.counts: Counter[str] = Counter()
        self.ended: deque[float] = deque()  # local times tasks ended, for tasks/s
        self.failures: deque[dict[str, Any]] = deque(maxlen=10)
        self.names: dict[str, str] = {}  # task id -> name, from task-received and task-sent

    def add(self, event: dict[str, Any], now: float) -> None:
        kind, host = event["type"], event.get("hostname", "?")
        if kind.startswith("worker-"):
            self.workers[host] = (0.0 if kind == "worker-offline" else now, event)
            return
        if kind != "task-sent":  # any event of a worker shows it alive
            self.workers[host] = (now, self.workers.get(host, (now, {}))[1])
        if kind in STATES:
            self.counts[STATES[kind]] += 1
        if "name" in event:
            self.names[event.get("uuid", "")] = event["name"]
        if kind in _ENDED:
            self.ended.append(now)
        if kind == "task-failed":
            self.failures.appendleft(event)

    def render(self, now: float) -> str:
        while self.ended and self.ended[0] < now - RATE_WINDOW:
            self.ended.popleft()
        alive = now - HEARTBEAT_INTERVAL * MISSED_HEARTBEATS
        lines = [f"kq events  {time.strftime('%H:%M:%S')}  "
                 f"{len(self.ended) / RATE_WINDOW:.1f} tasks/s (last {RATE_WINDOW:.0f} s)", "",
                 "workers:"]
        for host, (seen, event) in sorted(self.workers.items()):
            state = "online" if seen >= alive else "OFFLINE"
            lines.append(f"  {host:30} {state:8} active {event.get('active', '-')}  "
                         f"processed {event.get('processed', '-')}")
        lines += ["", "tasks:  " + "  ".join(f"{state} {self.counts[state]}"
                                              for state in STATES.values()), "",
                  "last failures:"]
        for event in self.failures:
            task_id = event.get("uuid", "?")
            lines.append(f"  {self.names.get(task_id, '?'):30} {task_id}  {event.get('exception')}")
        return "\n".join(lines) + "\n"


@click.command("events")
@app_options
@click.option("--dump", is_flag=True, help="Print each event as one JSON line instead of the view.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Exit after SECONDS. Default: run until Ctrl-C.")
def events(app_spec: str | None, broker: str | None, result_backend: str | None, dump: bool,
           duration: float | None) -> None:
    """Watch task and worker events: workers online, tasks per second, counts by state and the
    last failures, redrawn every second. Workers send events with `kq worker -E`."""
    app = make_app(app_spec, broker, result_backend)
    if not app.plugins.transport_for(app.conf.broker_url).capabilities.fanout:
        raise ConfigurationError("events need a broker with fan-out (kq-redis, kq-amqp, "
                                 "kq-sqlite); this one has none")
    transport = app.new_transport()
    view = None if dump else View()
    try:
        queue = transport.subscribe(CHANNEL)
        click.echo(f"kq: listening for events on {CHANNEL}", err=True)
        end = None if duration is None else time.monotonic() + duration
        next_draw = 0.0
        while end is None or (remaining := end - time.monotonic()) > 0:
            deliveries = transport.fetch([queue], 100, 1.0 if end is None else min(1.0, remaining))
            if deliveries:
                transport.ack(deliveries)
            now = time.time()
            for delivery in deliveries:
                for event in decode(delivery.envelope.body):
                    event["local_received"] = now
                    if view is None:
                        sys.stdout.write(json.dumps(event) + "\n")
                    else:
                        view.add(event, now)
            if view is None:
                sys.stdout.flush()
            elif time.monotonic() >= next_draw:
                next_draw = time.monotonic() + 1.0
                sys.stdout.write(CLEAR + view.render(now))
                sys.stdout.flush()
        transport.unsubscribe(queue)
    except KeyboardInterrupt:
        pass
    finally:
        transport.close()
