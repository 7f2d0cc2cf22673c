"""What a scenario's run gets from the harness: run settings, workers, clients, counters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from frameworks.benchkit import RunEnv
from procs import WorkerProcess, run_client
from services import Services
from workers import WorkerSpec


@attrs.frozen
class Progress:
    """When a worker's counter moved, in seconds since the worker was launched."""

    first_at: float  # first poll that saw a task done
    first_count: int  # tasks done by then
    done_at: float  # first poll that saw all tasks done


@attrs.define
class RunContext:
    services: Services
    #: Where worker logs and client results go (a temporary directory).
    work_dir: Path
    #: Shows what is running (the progress bar's postfix).
    status: Callable[[str], None] = lambda text: None
    #: When set, workers and clients of the roles listed run under py-spy, writing here.
    profile_dir: Path | None = None
    profile_roles: tuple[str, ...] = ()

    def _profile_path(self, role: str) -> Path | None:
        if self.profile_dir is None or role not in self.profile_roles:
            return None
        return self.profile_dir / f"{role}-{time.monotonic_ns()}.txt"

    @contextmanager
    def environment(self, **options: Any) -> Iterator[RunEnv]:
        """A fresh run (see :meth:`Services.new_run`), its keys and queues deleted afterwards."""
        env = self.services.new_run(**options)
        try:
            yield env
        finally:
            self.services.cleanup(env)

    @contextmanager
    def worker(self, spec: WorkerSpec, env: RunEnv) -> Iterator[WorkerProcess]:
        """A worker launched now with its framework's CLI; stopped (or killed) when the block ends."""
        log = self.work_dir / f"worker-{env.prefix.rstrip(':')}-{spec.framework}.log"
        worker = WorkerProcess(spec.command(env.queue), env, log, self._profile_path("worker"))
        try:
            yield worker
        finally:
            worker.stop()

    def client(
        self,
        framework: str,
        operation: str,
        env: RunEnv,
        timeout: float = 600,
        worker: WorkerProcess | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Run ``operation`` of ``frameworks/client.py`` in a new process (see there); it fails at
        once when ``worker`` (the one it needs) dies."""
        return run_client(
            framework, operation, env, params, self.work_dir, timeout, self._profile_path("client"), worker
        )

    def wait_count(self, key: str, n: int, worker: WorkerProcess, timeout: float) -> Progress:
        """Poll the counter ``key`` until it reaches ``n``; fail if the worker dies or it is late."""
        redis = self.services.redis
        first: tuple[float, int] | None = None
        shown = 0.0
        while True:
            done = int(redis.get(key) or 0)
            now = time.perf_counter() - worker.launched_at
            if done and first is None:
                first = (now, done)
            if done >= n:
                assert first is not None
                return Progress(first[0], first[1], now)
            if now > timeout:
                raise TimeoutError(f"only {done} of {n} tasks ran within {timeout:.0f} s")
            if now - shown > 0.5:
                worker.check_alive()
                self.status(f"{done:,}/{n:,}")
                shown = now
            time.sleep(0.005)

    def expect_count(self, key: str, n: int, settle: float = 0.5) -> None:
        """After ``settle`` seconds the counter is exactly ``n``: no task ran twice or late."""
        time.sleep(settle)
        found = self.services.count(key)
        if found != n:
            raise AssertionError(f"counter {key} is {found}, expected exactly {n}")
