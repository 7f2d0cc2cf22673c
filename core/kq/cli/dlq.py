"""``kq dlq list|show|replay|purge``: the dead letters of a queue, from the shell (docs/dead-letters.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from .. import deadletter
from ..transport import DEAD_LETTER_SUFFIX, Transport, dead_letter_queue
from .common import app_options, make_app
from .control import _table

WHAT = """A dead letter is a message a worker refused without running it: undecodable, an
untrusted content type or signature, over a size limit, a task the worker does not know, or
expired. The broker keeps it in the queue's dead-letter queue, <queue>.dlq, with headers saying
why (x-kq-reject-reason), when (x-kq-rejected-at) and from which queue (x-kq-original-queue).
`kq dlq replay` sends them back to their queue: that runs those tasks again."""


@click.group(
    help=f"""Inspect, replay and purge dead letters.

{WHAT}

QUEUE is the queue the messages were refused from (default: the task_default_queue setting);
`celery` and `celery.dlq` mean the same. Message bodies are never decoded: they are untrusted.
See docs/dead-letters.md."""
)
def dlq() -> None:
    pass


def queue_argument(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("queue", required=False)(command)


@contextmanager
def _dead_letters(
    app_spec: str | None, broker: str | None, queue: str | None
) -> Iterator[tuple[Transport, str]]:
    """The app's broker connection and the dead-letter queue of ``queue``, closed after."""
    app = make_app(app_spec, broker, None)
    spec = app.plugins.transport_for(app.conf.broker_url)
    if not spec.capabilities.dead_letter:
        raise click.ClickException(
            f"the broker ({app.conf.broker_url.split(':', 1)[0]}://) does not dead-letter: refused "
            f"messages are dropped, so there is nothing to inspect; use a broker whose plugin "
            f"declares dead_letter (sqlite, redis, amqp, memory; see `kq plugins`)"
        )
    name = queue or app.conf.task_default_queue
    if not name.endswith(DEAD_LETTER_SUFFIX):
        name = dead_letter_queue(name)
    transport = app.new_transport()
    try:
        yield transport, name
    finally:
        transport.close()


@dlq.command(
    "list",
    help=f"""List the dead letters of QUEUE, oldest first, leaving them there.

{WHAT}""",
)
@queue_argument
@app_options
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="List at most this many."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list (every field and header) instead of a table."
)
def list_command(
    queue: str | None,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    limit: int,
    as_json: bool,
) -> None:
    with _dead_letters(app_spec, broker, queue) as (transport, name):
        depth = transport.depth(name)
        letters = deadletter.peek(transport, name, limit)
    if as_json:
        click.echo(json.dumps([letter.as_dict() for letter in letters], indent=2))
        return
    if not letters:
        click.echo(f"{name}: no dead letters.")
        return
    shown = f", the first {len(letters)}" if depth > len(letters) else ""
    click.echo(f"{name}: {depth} dead letter(s){shown}:")
    rows = [
        (
            letter.task_id or "(no id)",
            letter.task or "(no task)",
            letter.rejected_at or "",
            _short(letter.reason or "(no reason: dead-lettered by the broker)", 70),
        )
        for letter in letters
    ]
    click.echo(_table(("TASK ID", "TASK", "REJECTED AT", "REASON"), rows))


@dlq.command(
    help=f"""Show the dead letter of task TASK_ID: why it was refused, its headers and
body size (the body itself is never decoded), leaving it there.

{WHAT}"""
)
@click.argument("task_id")
@click.option("-Q", "--queue", help="The queue it was refused from. Default: task_default_queue.")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def show(
    task_id: str,
    queue: str | None,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    as_json: bool,
) -> None:
    with _dead_letters(app_spec, broker, queue) as (transport, name):
        letter = deadletter.find(transport, name, task_id)
    if letter is None:
        raise click.ClickException(f"no dead letter of task {task_id} in {name}")
    if as_json:
        click.echo(json.dumps(letter.as_dict(), indent=2))
        return
    for label, value in (
        ("task id", letter.task_id),
        ("task", letter.task),
        ("reason", letter.reason or "(none: dead-lettered by the broker)"),
        ("rejected at", letter.rejected_at),
        ("from queue", letter.original_queue),
        ("dead-letter queue", letter.queue),
        ("args", letter.argsrepr),
        ("kwargs", letter.kwargsrepr),
        ("body", f"{letter.body_size} bytes of {letter.content_type or '?'} (not decoded)"),
    ):
        click.echo(f"{label + ':':<19}{value if value is not None else '-'}")
    click.echo("headers:")
    click.echo(json.dumps(letter.as_dict()["headers"], indent=2, sort_keys=True))


@dlq.command(
    help=f"""Send dead letters of QUEUE back to the queue they were refused from, to be
run again, without the dead-letter headers.

{WHAT}

Replaying re-runs those tasks: fix what made them fail first (deploy the missing task, accept
the content type), or they are refused and dead-lettered again. Without --id or --reason every
dead letter is replayed (at most --limit). Each message is published, then removed from the
dead-letter queue: an interruption in between leaves it in both, never in neither."""
)
@queue_argument
@app_options
@click.option(
    "--id",
    "ids",
    multiple=True,
    metavar="TASK_ID",
    help="Only the dead letter of this task; repeat for several.",
)
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    metavar="TEXT",
    help="Only dead letters whose reason contains TEXT (e.g. unknown-task, expired); repeat for several.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Replay at most this many.")
def replay(
    queue: str | None,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    ids: tuple[str, ...],
    reasons: tuple[str, ...],
    limit: int | None,
) -> None:
    with _dead_letters(app_spec, broker, queue) as (transport, name):
        letters = deadletter.replay(transport, name, ids=ids, reasons=reasons, limit=limit)
    if not letters:
        click.echo(f"{name}: no dead letters to replay.")
        return
    for letter in letters:
        click.echo(f"{letter.task_id or '(no id)'} {letter.task or '(no task)'} -> {letter.original_queue}")
    click.echo(f"Replayed {len(letters)} message(s) from {name}.")


@dlq.command(
    help=f"""Delete every dead letter of QUEUE, for good.

{WHAT}"""
)
@queue_argument
@app_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(
    queue: str | None, app_spec: str | None, broker: str | None, result_backend: str | None, yes: bool
) -> None:
    with _dead_letters(app_spec, broker, queue) as (transport, name):
        depth = transport.depth(name)
        if depth == 0:
            click.echo(f"{name}: no dead letters.")
            return
        if not yes:
            click.confirm(f"Delete {depth} dead letter(s) from {name} for good?", abort=True)
        click.echo(f"Purged {transport.purge(name)} dead letter(s) from {name}.")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
