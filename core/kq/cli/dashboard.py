"""``kq dashboard``: serve the web dashboard (see :mod:`kq.dashboard`) until Ctrl-C."""

from __future__ import annotations

import os
import threading

import click

from ..config import safe_url
from .common import app_options, make_app


@click.command()
@app_options
@click.option(
    "--host",
    metavar="ADDRESS",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 exposes the dashboard to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=5555,
    show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--auth",
    metavar="USER:PASSWORD",
    envvar="KQ_DASHBOARD_AUTH",
    help="Require HTTP basic auth with these credentials (or KQ_DASHBOARD_AUTH).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="KQ_DASHBOARD_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' (or KQ_DASHBOARD_TOKEN).",
)
@click.option(
    "-Q",
    "--queues",
    metavar="Q1,Q2",
    help="Queues to chart. Default: task_default_queue and every queue task_routes names.",
)
def dashboard(
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    host: str,
    port: int,
    auth: str | None,
    token: str | None,
    queues: str | None,
) -> None:
    """Serve a web page over the fleet: workers, queues with depth charts, tasks with their
    results and tracebacks, failures, revoke and retry buttons, rate limits.

    It reads events (start workers with `kq worker -E`), the result backend and queue depths;
    it needs no server besides the broker.
    """
    from ..dashboard.server import serve  # the HTTP server only when this command runs
    from ..dashboard.state import Dashboard

    app = make_app(app_spec, broker, result_backend)
    names = [name.strip() for name in queues.split(",") if name.strip()] if queues else None
    state = Dashboard(app, names)
    server = serve(state, host, port, auth=auth, token=token)
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(
        f"kq: dashboard on http://{shown_host}:{server.server_port}/ (broker "
        f"{safe_url(app.conf.broker_url)}, pid {os.getpid()})",
        err=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        state.stop()
        app.close()
