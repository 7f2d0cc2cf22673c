"""``kq beat``: publish periodic tasks; ``--list`` shows the entries and their next runs."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from types import FrameType

import click

from ..beat import MISSED_POLICIES, Beat
from .common import app_options, make_app, setup_logging


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def print_entries(beat: Beat) -> None:
    rows = [("NAME", "TASK", "SCHEDULE", "LAST RUN (UTC)", "NEXT RUN (UTC)", "MISSED")]
    for status in beat.status():
        entry = status.entry
        rows.append(
            (
                entry.name,
                entry.task,
                entry.schedule.describe(),
                _when(status.last),
                _when(status.next),
                entry.missed or beat.missed,
            )
        )
    if len(rows) == 1:
        click.echo("no periodic tasks: set beat_schedule or use @app.periodic (docs/beat.md)")
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    leader = beat.store.leader()
    click.echo(f"\nleader: {leader or 'none (no kq beat is running)'}")


def stop_on_signals(beat: Beat) -> None:
    """SIGTERM/SIGINT: stop after the current tick and hand the lock to another beat at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        beat.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def start_embedded(beat: Beat) -> threading.Thread:
    """Run ``beat`` in a daemon thread of this process (``kq worker -B``)."""
    thread = threading.Thread(target=beat.run, name="kq-beat", daemon=True)
    thread.start()
    return thread


@click.command()
@app_options
@click.option(
    "--store",
    metavar="URL",
    help="Where beat keeps last runs and its leader lock (redis://..., sqlite:///...). "
    "Default: the beat_store setting, else the broker's when a plugin provides a "
    "store for it, else sqlite:///kq.sqlite3.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Leader lock lifetime: how soon another beat takes over from a dead leader. "
    "Default: the beat_lease setting (10).",
)
@click.option(
    "--missed",
    type=click.Choice(MISSED_POLICIES),
    help="Runs missed while no beat ran: send one (once), each (all) or none (skip). "
    "Default: the beat_missed setting (once); entries may set their own.",
)
@click.option(
    "--list",
    "list_entries",
    is_flag=True,
    help="Print every entry with its last and next run, and the leader; then exit.",
)
@click.option(
    "-l",
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def beat(
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    store: str | None,
    lease: float | None,
    missed: str | None,
    list_entries: bool,
    loglevel: str,
) -> None:
    """Publish the app's periodic tasks (beat_schedule and @app.periodic) on their schedules.

    Run as many as you like against one shared store (Redis, or SQLite on one machine): exactly
    one leads and publishes; if it dies another takes over within --lease seconds, and no slot is
    published twice. SIGTERM or Ctrl-C stops it and hands the lead over at once.
    """
    setup_logging(loglevel)
    app = make_app(app_spec, broker, result_backend)
    app.override(beat_store=store, beat_lease=lease, beat_missed=missed)
    the_beat = Beat(app)
    if list_entries:
        try:
            print_entries(the_beat)
        finally:
            the_beat.store.close()
        return
    stop_on_signals(the_beat)
    the_beat.run()
