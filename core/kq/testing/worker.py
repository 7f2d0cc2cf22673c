"""Running real workers from tests: in a thread of the test process, or as a subprocess.

A thread worker is quick and shares the test's app object; a subprocess worker is the real
thing (``kq worker`` with its own interpreter, signals and exit code) and is what tests about
crashes, signals and several processes must use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..app import App
from ..worker import Worker


@contextmanager
def worker_thread(app: App, **options: Any) -> Iterator[Worker]:
    """Run a :class:`~kq.worker.Worker` for ``app`` in a thread; stop it warmly on exit.

    ``options`` go to :class:`~kq.worker.Worker` (``pool``, ``concurrency``, ``queues``, ...).
    """
    worker = Worker(app, **options)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"kq-worker-{worker.hostname}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not worker.wait_ready(0.05):
        if errors or time.monotonic() > deadline:
            thread.join(5)
            raise RuntimeError(f"worker did not start: {errors[0] if errors else 'timeout'}")
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
        if thread.is_alive():
            raise RuntimeError("worker thread did not stop within 60 s")
        if errors:
            raise errors[0]


class WorkerProcess:
    """A ``kq worker`` subprocess; its output is captured in ``log_path``."""

    #: The ``kq`` subcommand run, and what its log says once it is up.
    subcommand = "worker"
    ready_marker = " ready: "

    def __init__(
        self,
        app_spec: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        log_path: str | None = None,
    ) -> None:
        self.command = [sys.executable, "-m", "kq", self.subcommand, "-A", app_spec, *args]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log_path = log_path or os.path.join(cwd or ".", f"worker-{id(self)}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: float = 30.0) -> WorkerProcess:
        """Start the process and wait until it logs that it is up (a worker: consuming)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.subcommand} {self.process.pid} is running already")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + wait_ready
        while self.ready_marker not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.subcommand} exited with {self.process.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.subcommand} not ready after {wait_ready} s:\n{self.output()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit and return its exit code."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is not None:
                self._log.close()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (warm shutdown), wait, and return the exit code; kill if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.wait(10)
            raise

    def __enter__(self) -> WorkerProcess:
        # ``with WorkerProcess(...)`` starts it; ``with process.start()`` has started it already
        return self if self.process is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.wait(10)


class BeatProcess(WorkerProcess):
    """A ``kq beat`` subprocess, started like :class:`WorkerProcess`."""

    subcommand = "beat"
    ready_marker = " entries ("
