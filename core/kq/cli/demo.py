"""``kq demo``: a real worker process, a real SQLite broker, real results; zero configuration."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import click

from ..exceptions import TimeoutError as ResultTimeout
from ..result import AsyncResult
from .demo_app import add, app, whoami


def _wait(result: AsyncResult, worker: subprocess.Popen[bytes], timeout: float) -> Any:
    """``result.get``, but give up at once if the worker process has died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return result.get(timeout=0.5)
        except ResultTimeout:
            if worker.poll() is not None:
                raise click.ClickException(
                    f"the worker exited with code {worker.returncode}; see its log above"
                ) from None
            if time.monotonic() > deadline:
                raise click.ClickException(f"no result for {result.id} after {timeout} s") from None


@click.command()
@click.option(
    "-n",
    "--tasks",
    "count",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many tasks to send.",
)
@click.option("-P", "--pool", default="threads", show_default=True, help="The worker's pool.")
@click.option(
    "-c",
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="The worker's concurrency.",
)
@click.option("--keep", is_flag=True, help="Keep the SQLite file afterwards and print its path.")
def demo(count: int, pool: str, concurrency: int, keep: bool) -> None:
    """Run kq end to end on a temporary SQLite file: no server, no configuration.

    Starts a real `kq worker` process, sends COUNT `demo.add` tasks, waits for every result
    with a progress bar, checks them, prints the rates achieved, and stops the worker warmly.
    """
    directory = tempfile.mkdtemp(prefix="kq-demo-")
    url = f"sqlite:///{os.path.join(directory, 'kq.sqlite3')}"
    app.override(broker_url=url, result_backend=url)
    app.check()
    env = {**os.environ, "KQ_BROKER_URL": url, "KQ_RESULT_BACKEND": url}
    click.echo(f"kq demo: broker and results in {url}")
    click.echo(f"Starting a worker process: kq worker -A kq.cli.demo_app:app -P {pool} -c {concurrency}")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kq",
            "worker",
            "-A",
            "kq.cli.demo_app:app",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-l",
            "warning",
        ],
        env=env,
    )
    try:
        worker_pid = _wait(whoami.delay(), worker, timeout=60)
        click.echo(f"Worker is up (pid {worker_pid}; this process is pid {os.getpid()}).")
        start = time.perf_counter()
        results = [add.delay(i, i) for i in range(count)]
        published = time.perf_counter() - start
        click.echo(f"Sent {count} tasks in {published:.2f} s ({count / published:,.0f} tasks/s).")
        values = []
        with click.progressbar(results, label="Results", show_pos=True) as bar:
            for result in bar:
                values.append(_wait(result, worker, timeout=120))
        elapsed = time.perf_counter() - start
        for i in (0, 1, count // 2, count - 1)[: min(count, 4)]:
            click.echo(f"  demo.add({i}, {i}) = {values[i]}  [task {results[i].id}]")
        wrong = sum(1 for i, v in enumerate(values) if v != i + i)
        click.echo(
            f"{count - wrong} of {count} results correct; {count} tasks sent, run by the "
            f"worker and stored in {elapsed:.2f} s ({count / elapsed:,.0f} tasks/s "
            f"end to end)."
        )
        if wrong:
            raise click.ClickException(f"{wrong} results were wrong")
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        app.close()
        if keep:
            click.echo(f"Kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    click.echo(f"Worker stopped (exit code {worker.returncode}).")
