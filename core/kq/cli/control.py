"""``kq inspect``, ``kq control``, ``kq status`` and ``kq queues``: looking at and steering a
running fleet from the shell (remote control needs a broker with fan-out; see docs/monitoring.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from ..app import App
from ..control import CONTROL_COMMANDS, INSPECT_COMMANDS, broadcast
from .common import app_options, make_app


def remote_options(command: Any) -> Any:
    """``-d/--destination``, ``--timeout`` and ``--json``, shared by the remote-control commands."""
    command = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the replies as JSON ({worker: reply}) instead of a table.",
    )(command)
    command = click.option(
        "-t",
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
        help="Seconds to wait for replies (less when every worker named with -d has answered).",
    )(command)
    command = click.option(
        "-d",
        "--destination",
        metavar="NAME,...",
        help="Only these workers (their -n names, e.g. w1@host). Default: all.",
    )(command)
    return command


def _names(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


def _ask(
    app: App, method: str, arguments: dict[str, Any], destination: str | None, timeout: float
) -> dict[str, Any]:
    replies = broadcast(app, method, arguments, destination=_names(destination), timeout=timeout)
    if not replies:
        raise click.ClickException(f"no worker replied within {timeout:g} s")
    return replies


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")


def _show(method: str, replies: dict[str, Any]) -> tuple[str, bool]:
    """The replies as text, and whether every worker answered without an error."""
    lines, rows, ok = [], [], True
    for name, reply in sorted(replies.items()):
        if not isinstance(reply, dict) or "ok" not in reply:
            ok = False
            lines.append(f"{name}: error: {reply.get('error') if isinstance(reply, dict) else reply}")
            continue
        value = reply["ok"]
        if method == "ping":
            lines.append(f"{name}: pong")
        elif method in ("active", "reserved", "scheduled"):
            rows += [
                (
                    name,
                    job["id"],
                    job["name"],
                    f"{job['args']} {job['kwargs']}",
                    _when(job["started"]) if "started" in job else job.get("eta", ""),
                )
                for job in value
            ]
            if not value:
                lines.append(f"{name}: none")
        elif method == "registered":
            lines.append(f"{name}: {len(value)} tasks\n" + "\n".join(f"  {task}" for task in value))
        elif method == "active_queues":
            lines.append(f"{name}: {', '.join(queue['name'] for queue in value)}")
        elif method == "stats":
            lines.append(
                f"{name}:\n" + "\n".join(f"  {key}: {json.dumps(item)}" for key, item in value.items())
            )
        else:
            lines.append(f"{name}: {value}")
    if rows:
        when = "started" if method == "active" else "eta"
        lines.insert(0, _table(("worker", "id", "name", "arguments", when), rows))
    return "\n".join(lines), ok


@click.command()
@click.argument("method", metavar="COMMAND", type=click.Choice(INSPECT_COMMANDS))
@app_options
@remote_options
def inspect(
    method: str,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Ask running workers about themselves; each answers for itself.

    \b
    ping           which workers are up
    active         the tasks running now (id, name, arguments, when each started)
    reserved       prefetched tasks waiting for a pool slot (rate-limited ones included)
    scheduled      tasks held until their ETA / countdown
    registered     the task names each worker knows
    stats          counters, pool, prefetch, uptime, pid, broker
    active_queues  the queues each worker consumes

    Exit status 1 when no worker replied within --timeout.
    """
    app = make_app(app_spec, broker, result_backend)
    replies = _ask(app, method, {}, destination, timeout)
    text, ok = (json.dumps(replies, indent=2), True) if as_json else _show(method, replies)
    click.echo(text)
    if not ok:
        raise SystemExit(1)


def _control_arguments(method: str, args: Sequence[str]) -> dict[str, Any]:
    """Positional COMMAND arguments as the worker's keyword arguments."""
    usage = {
        "rate_limit": "TASK RATE",
        "time_limit": "TASK SOFT [HARD]",
        "pool_grow": "[N]",
        "pool_shrink": "[N]",
        "autoscale": "MAX MIN",
        "add_consumer": "QUEUE",
        "cancel_consumer": "QUEUE",
        "shutdown": "",
    }[method]
    wanted = usage.split()
    required = [word for word in wanted if not word.startswith("[")]
    if not len(required) <= len(args) <= len(wanted):
        raise click.UsageError(f"usage: kq control {method} {usage}".rstrip())
    try:
        if method == "rate_limit":
            return {"task_name": args[0], "rate_limit": args[1]}
        if method == "time_limit":
            soft = float(args[1]) if args[1] != "none" else None
            hard = float(args[2]) if len(args) > 2 and args[2] != "none" else None
            return {"task_name": args[0], "soft": soft, "hard": hard}
        if method in ("pool_grow", "pool_shrink"):
            return {"n": int(args[0]) if args else 1}
        if method == "autoscale":
            return {"max": int(args[0]), "min": int(args[1])}
        if method in ("add_consumer", "cancel_consumer"):
            return {"queue": args[0]}
    except ValueError as exc:
        raise click.UsageError(f"kq control {method}: {exc}") from None
    return {}


@click.command()
@click.argument("method", metavar="COMMAND", type=click.Choice(CONTROL_COMMANDS))
@click.argument("args", nargs=-1)
@app_options
@remote_options
@click.option("--terminate", is_flag=True, help="revoke: also stop the task if it is running.")
@click.option(
    "--signal",
    "sig",
    default="SIGTERM",
    show_default=True,
    help="revoke --terminate: the signal to stop it with.",
)
def control(
    method: str,
    args: tuple[str, ...],
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    destination: str | None,
    timeout: float,
    as_json: bool,
    terminate: bool,
    sig: str,
) -> None:
    """Change running workers; each changed worker replies.

    \b
    revoke ID...               skip these tasks everywhere (as App.revoke: every worker,
                               including ones started later; no replies)
    rate_limit TASK RATE       per-worker rate limit, e.g. 10/s, 100/m; "none" removes it
    time_limit TASK SOFT [HARD]  time limits (seconds, or "none") for tasks started from now
    shutdown                   warm shutdown: running tasks finish
    pool_grow [N]              add N pool slots (pools that can resize)
    pool_shrink [N]            remove N idle pool slots
    autoscale MAX MIN          grow up to MAX slots while work waits, shrink to MIN
    add_consumer QUEUE         start consuming QUEUE
    cancel_consumer QUEUE      stop consuming QUEUE

    Changes apply at each worker's next step (within a second). Exit status 1 when no worker
    replied within --timeout or one replied with an error.
    """
    app = make_app(app_spec, broker, result_backend)
    if method == "revoke":
        if not args:
            raise click.UsageError("usage: kq control revoke ID...")
        app.revoke(list(args), terminate=terminate, signal=sig)
        click.echo(f"revoked {', '.join(args)}")
        return
    replies = _ask(app, method, _control_arguments(method, args), destination, timeout)
    text, ok = _show(method, replies)
    click.echo(json.dumps(replies, indent=2) if as_json else text)
    if not ok:
        raise SystemExit(1)


@click.command()
@app_options
@remote_options
def status(
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """List the workers that answer a ping: name, pid, uptime. Exit status 1 when none does."""
    app = make_app(app_spec, broker, result_backend)
    replies = broadcast(app, "ping", destination=_names(destination), timeout=timeout)
    if as_json:
        click.echo(json.dumps(replies, indent=2))
    else:
        rows = [
            (name, reply["ok"].get("pid", "?"), _duration(reply["ok"].get("uptime", 0)))
            for name, reply in sorted(replies.items())
            if isinstance(reply, dict) and isinstance(reply.get("ok"), dict)
        ]
        if rows:
            click.echo(_table(("worker", "pid", "uptime"), rows))
        click.echo(f"{len(replies)} worker{'s' if len(replies) != 1 else ''} online.")
    if not replies:
        raise SystemExit(1)


@click.command()
@app_options
@click.option(
    "-Q",
    "--queues",
    metavar="Q1,Q2",
    help="Queues to count. Default: task_default_queue and every queue task_routes names.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {queue: depth} as JSON.")
def queues(
    app_spec: str | None, broker: str | None, result_backend: str | None, queues: str | None, as_json: bool
) -> None:
    """How many messages wait in each queue (ready ones; not those a worker has reserved)."""
    app = make_app(app_spec, broker, result_backend)
    names = _names(queues) or app.router.queues()
    transport = app.new_transport()
    try:
        depths = {name: transport.depth(name) for name in names}
    finally:
        transport.close()
    if as_json:
        click.echo(json.dumps(depths, indent=2))
    else:
        click.echo(_table(("queue", "messages"), sorted(depths.items())))
