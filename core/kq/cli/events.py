"""``kq events``: watch the events workers (``kq worker -E``) and clients broadcast.

The live view is redrawn in place every second with plain ANSI escapes (no curses), so it works
in any terminal and in ``watch``-less containers; ``--dump`` prints one JSON line per event
instead, for piping and tests.
"""

from __future__ import annotations

import json
import sys
import time

import click

from ..events import CHANNEL
from ..exceptions import ConfigurationError
from ..monitor import RATE_WINDOW, STATES, Monitor, decode, receive
from .common import app_options, make_app

__all__ = ["View", "decode", "events"]
CLEAR = "\x1b[H\x1b[2J"


class View(Monitor):
    """The fleet model drawn as text for the terminal."""

    def render(self, now: float) -> str:
        lines = [
            f"kq events  {time.strftime('%H:%M:%S')}  "
            f"{self.throughput(now):.1f} tasks/s (last {RATE_WINDOW:.0f} s)",
            "",
            "workers:",
        ]
        for host, (seen, event) in sorted(self.workers.items()):
            state = "online" if self.online(seen, now) else "OFFLINE"
            lines.append(
                f"  {host:30} {state:8} active {event.get('active', '-')}  "
                f"processed {event.get('processed', '-')}"
            )
        lines += [
            "",
            "tasks:  " + "  ".join(f"{state} {self.counts[state]}" for state in STATES.values()),
            "",
            "last failures:",
        ]
        names = self.names
        for event in self.failures:
            task_id = event.get("uuid", "?")
            lines.append(f"  {names.get(task_id, '?'):30} {task_id}  {event.get('exception')}")
        return "\n".join(lines) + "\n"


@click.command("events")
@app_options
@click.option("--dump", is_flag=True, help="Print each event as one JSON line instead of the view.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Exit after SECONDS. Default: run until Ctrl-C.",
)
def events(
    app_spec: str | None, broker: str | None, result_backend: str | None, dump: bool, duration: float | None
) -> None:
    """Watch task and worker events: workers online, tasks per second, counts by state and the
    last failures, redrawn every second. Workers send events with `kq worker -E`."""
    app = make_app(app_spec, broker, result_backend)
    if not app.plugins.transport_for(app.conf.broker_url).capabilities.fanout:
        raise ConfigurationError(
            "events need a broker with fan-out (kq-redis, kq-amqp, kq-sqlite); this one has none"
        )
    transport = app.new_transport()
    view = None if dump else View()
    try:
        queue = transport.subscribe(CHANNEL)
        click.echo(f"kq: listening for events on {CHANNEL}", err=True)
        end = None if duration is None else time.monotonic() + duration
        next_draw = 0.0
        while end is None or (remaining := end - time.monotonic()) > 0:
            received = receive(transport, queue, 1.0 if end is None else min(1.0, remaining))
            now = time.time()
            for event in received:
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
