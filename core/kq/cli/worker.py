"""``kq worker``: run a worker until SIGTERM/SIGINT (warm) or a second signal (cold)."""

from __future__ import annotations

import logging
import os
import signal
import socket
from types import FrameType

import click

from ..beat import Beat
from ..plugins import get_plugins
from ..worker import Worker
from ..worker.probes import serve_probes
from ..worker.watchdog import start_watchdog
from .beat import start_embedded
from .common import app_options, make_app, setup_logging

log = logging.getLogger("kq.worker")


def install_signal_handlers(worker: Worker) -> None:
    """SIGTERM/SIGINT: warm shutdown; the same again: exit at once. SIGQUIT: exit at once."""

    def warm(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if worker.stopping:
            log.warning(
                "kq: %s again: cold shutdown, exiting now (unacked tasks will be redelivered by the broker)",
                name,
            )
            worker.abandon()
            os._exit(1)
        log.info("kq: %s: warm shutdown, finishing running tasks (send again to exit now)", name)
        worker.stop()

    def cold(signum: int, frame: FrameType | None) -> None:
        log.warning("kq: %s: cold shutdown, exiting now", signal.Signals(signum).name)
        worker.abandon()
        os._exit(1)

    signal.signal(signal.SIGTERM, warm)
    signal.signal(signal.SIGINT, warm)
    if hasattr(signal, "SIGQUIT"):
        signal.signal(signal.SIGQUIT, cold)


def expand_hostname(name: str) -> str:
    """``-n worker1@%h``: ``%h`` is this machine's host name, ``%n`` its first label and ``%d``
    the rest (the domain), so one command line names each machine's worker apart."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    return name.replace("%h", host).replace("%n", short).replace("%d", domain)


@click.command()
@app_options
@click.option(
    "-P",
    "--pool",
    metavar="NAME",
    envvar="KQ_WORKER_POOL",
    help="Concurrency model: a pool plugin name such as threads, solo or prefork "
    "(`kq plugins --hook kq_pools` lists them). Default: the worker_pool setting. "
    "Name it here (or in KQ_WORKER_POOL) for pools that must prepare the process "
    "before the app is imported, such as gevent.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    help="Tasks run at once. Default: the worker_concurrency setting, else the pool's "
    "own (threads: CPUs + 4 up to 32; prefork: CPUs; gevent, eventlet, asyncio: "
    "100; solo: 1). --autoscale sets the range instead.",
)
@click.option(
    "-Q",
    "--queues",
    metavar="Q1,Q2",
    help="Queues to consume, comma-separated. Default: the task_default_queue setting.",
)
@click.option(
    "-n",
    "--hostname",
    metavar="NAME",
    help="Worker name, used by `kq inspect -d` and `kq control -d`; %h expands to the "
    "host name (%n: its first part, %d: the domain). Default: kq@%h.",
)
@click.option(
    "--prefetch-multiplier",
    type=click.IntRange(min=0),
    help="Messages reserved per slot beyond the running ones.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Hard time limit for tasks that set none (pools that can enforce it).",
)
@click.option(
    "--soft-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Soft time limit: SoftTimeLimitExceeded is raised inside the task.",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    metavar="N",
    help="Replace a pool child after N tasks (process pools).",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    metavar="KIB",
    help="Replace a pool child whose memory grew above KIB kilobytes (process pools).",
)
@click.option(
    "--autoscale",
    metavar="MAX,MIN",
    help="Grow the pool up to MAX while messages wait, shrink to MIN when idle.",
)
@click.option(
    "--soft-shutdown-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="On SIGTERM, wait this long for running tasks, then abandon them (acks_late "
    "ones go back to their queue). Default: wait until they finish.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve /metrics (Prometheus), /healthz and /readyz on this port. Default: the "
    "worker_metrics_port setting (none).",
)
@click.option(
    "--metrics-host",
    metavar="ADDRESS",
    help="Address the metrics server listens on. Default: the worker_metrics_host setting (127.0.0.1).",
)
@click.option(
    "-E",
    "--events",
    is_flag=True,
    default=None,
    help="Broadcast task and worker events for `kq events` and other monitors. "
    "Default: the worker_send_task_events setting (off).",
)
@click.option(
    "-B",
    "--beat",
    "embed_beat",
    is_flag=True,
    help="Also run beat in this process (for development; in production run "
    "`kq beat` on its own, as many as you like).",
)
@click.option(
    "-l",
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
def worker(
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    pool: str | None,
    concurrency: int | None,
    queues: str | None,
    hostname: str | None,
    prefetch_multiplier: int | None,
    time_limit: float | None,
    soft_time_limit: float | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    autoscale: str | None,
    soft_shutdown_timeout: float | None,
    metrics_port: int | None,
    metrics_host: str | None,
    events: bool | None,
    embed_beat: bool,
    loglevel: str,
) -> None:
    """Consume tasks and run them.

    SIGTERM or Ctrl-C stops warmly: no new tasks start, running ones finish (within
    --soft-shutdown-timeout if given), prefetched ones go back to the broker, and the exit code
    is 0. A second signal (or SIGQUIT) exits at once with code 1; tasks that were not acked are
    then redelivered by the broker. A consumer loop stuck for worker_watchdog_timeout seconds
    (300 by default) logs its stack and exits with code 70, for a supervisor to restart it.
    """
    setup_logging(loglevel)
    if pool:
        setup = get_plugins().pools.get(pool).setup
        if setup is not None:
            setup()  # before the app (and what it imports) is loaded
    app = make_app(app_spec, broker, result_backend)
    app.override(
        task_time_limit=time_limit,
        task_soft_time_limit=soft_time_limit,
        worker_max_tasks_per_child=max_tasks_per_child,
        worker_max_memory_per_child=max_memory_per_child,
        worker_autoscale=autoscale,
        worker_soft_shutdown_timeout=soft_shutdown_timeout,
        worker_metrics_port=metrics_port,
        worker_metrics_host=metrics_host,
        worker_send_task_events=events,
    )
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    the_worker = Worker(
        app,
        queues=queue_list,
        pool=pool,
        concurrency=concurrency,
        prefetch_multiplier=prefetch_multiplier,
        hostname=expand_hostname(hostname) if hostname else None,
        app_spec=app_spec,
    )
    install_signal_handlers(the_worker)
    port = app.conf.worker_metrics_port
    probes = None if port is None else serve_probes(the_worker, app.conf.worker_metrics_host, port)
    embedded = Beat(app) if embed_beat else None
    if embedded is not None:
        thread = start_embedded(embedded)
    watchdog = start_watchdog(the_worker)
    try:
        the_worker.run()
    finally:
        if watchdog is not None:
            watchdog.stop()
        if embedded is not None:
            embedded.stop()
            thread.join(timeout=5)
        if probes is not None:
            probes.shutdown()
            probes.server_close()
