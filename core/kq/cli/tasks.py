"""``kq call``, ``kq result`` and ``kq purge``: sending, reading and clearing from the shell."""

from __future__ import annotations

import json
from typing import Any

import click

from ..exceptions import TimeoutError as ResultTimeout
from ..states import FAILURE, READY_STATES, REVOKED
from .common import app_options, make_app
from .follow import follow as follow_states


def _json_option(value: str | None, kind: type, what: str) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=what)
    return parsed


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


@click.command()
@click.argument("task_name")
@app_options
@click.option("-a", "--args", "args_json", metavar="JSON", help="Positional arguments, a JSON list.")
@click.option("-k", "--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments, a JSON object.")
@click.option(
    "-Q",
    "--queue",
    help="Queue to send to. Default: the task_routes setting's, else "
    "the task's own, else task_default_queue.",
)
@click.option("--countdown", type=float, help="Run no sooner than this many seconds from now.")
@click.option("--expires", type=float, help="Do not run after this many seconds from now.")
@click.option("--priority", type=click.IntRange(0, 9), help="0 (lowest) to 9 (highest).")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="With --wait: how long to wait.")
def call(
    task_name: str,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    countdown: float | None,
    expires: float | None,
    priority: int | None,
    wait: bool,
    timeout: float,
) -> None:
    """Send TASK_NAME to the workers and print its task id.

    The task need not be importable here: only its name travels. Example:
    kq call proj.tasks.add --args '[2, 3]' --wait
    """
    app = make_app(app_spec, broker, result_backend)
    args = _json_option(args_json, list, "--args")
    kwargs = _json_option(kwargs_json, dict, "--kwargs")
    sent = app.send_task(
        task_name, args, kwargs, queue=queue, countdown=countdown, expires=expires, priority=priority
    )
    click.echo(sent.id)
    if wait:
        try:
            value = sent.get(timeout=timeout, propagate=False)
        except ResultTimeout as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{sent.state}: {_show(value) if sent.state != FAILURE else repr(value)}")


@click.command()
@click.argument("task_id")
@app_options
@click.option("--wait", is_flag=True, help="Wait until the task is finished.")
@click.option(
    "--follow",
    is_flag=True,
    help="Print each state as it changes, progress as a bar, until the task is finished; "
    "exit status 1 if it failed or was revoked.",
)
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="With --wait or --follow: how long to wait.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=0.2,
    show_default=True,
    help="With --follow: seconds between reads.",
)
@click.option("--traceback", "show_traceback", is_flag=True, help="Print the traceback of a failed task.")
def result(
    task_id: str,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    wait: bool,
    follow: bool,
    timeout: float,
    interval: float,
    show_traceback: bool,
) -> None:
    """Print the state and result of TASK_ID.

    An unknown id reads as PENDING: the backend cannot tell "not run yet" from "never sent"
    (or already expired).
    """
    app = make_app(app_spec, broker, result_backend)
    handle = app.AsyncResult(task_id)
    if follow:
        try:
            follow_states(app, task_id, timeout, interval)
        except ResultTimeout as exc:
            raise click.ClickException(str(exc)) from None
    elif wait:
        try:
            handle.get(timeout=timeout, propagate=False)
        except ResultTimeout as exc:
            raise click.ClickException(str(exc)) from None
    state = handle.state
    if state not in READY_STATES:
        click.echo(state)
        return
    value = handle.result
    click.echo(f"{state}: {_show(value) if state != FAILURE else repr(value)}")
    if show_traceback and handle.traceback:
        click.echo(handle.traceback.rstrip())
    if follow and state in (FAILURE, REVOKED):
        raise SystemExit(1)


@click.command()
@app_options
@click.option("-Q", "--queues", required=True, metavar="Q1,Q2", help="Queues to empty, comma-separated.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge(
    app_spec: str | None, broker: str | None, result_backend: str | None, queues: str, force: bool
) -> None:
    """Delete every message waiting in the given queues.

    Running tasks are not affected, nor are messages already fetched by a worker. On brokers
    that keep delayed (ETA/countdown) messages apart from the queue (SQLite, Redis), delayed
    messages that are not due yet are kept too.
    """
    app = make_app(app_spec, broker, result_backend)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    transport = app.new_transport()
    try:
        counts = {name: transport.depth(name) for name in names}
        total = sum(counts.values())
        if total == 0:
            click.echo("No messages to purge.")
            return
        listing = ", ".join(f"{n} ({c})" for n, c in counts.items())
        if not force:
            click.confirm(f"Delete {total} message(s) from {listing}?", abort=True)
        purged = sum(transport.purge(name) for name in names)
        click.echo(f"Purged {purged} message(s) from {', '.join(names)}.")
    finally:
        transport.close()
