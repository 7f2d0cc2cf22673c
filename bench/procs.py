"""Worker and client processes: started in sessions of their own, measured, always cleaned up.

Every process runs in its own session, so stopping it (or killing it when it hangs) reaches its
pool children too. With a profile path, the process runs under ``py-spy record`` (which then is
the session leader and writes the samples when its target exits).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import psutil
from frameworks.benchkit import RunEnv, Unavailable

FRAMEWORKS_DIR = Path(__file__).resolve().parent / "frameworks"
#: ``py-spy record`` options: collapsed stacks (one per line), 250 samples/s, children included,
#: without pausing the process to sample it.
PY_SPY_RECORD = ("record", "--format", "raw", "--rate", "250", "--subprocesses", "--nonblocking")


def process_env(env: RunEnv) -> dict[str, str]:
    """The environment of worker and client processes: the run's settings and the app modules."""
    path = os.pathsep.join(p for p in (str(FRAMEWORKS_DIR), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, **env.environ(), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _under_profiler(command: list[str], profile: Path | None) -> list[str]:
    if profile is None:
        return command
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [spy, *PY_SPY_RECORD, "-o", str(profile), "--", *command]


@attrs.frozen
class Memory:
    """Resident memory of a process tree. RSS counts pages shared by forked children once per
    process (as ``ps`` does); PSS splits shared pages between the processes sharing them."""

    rss_mb: float
    pss_mb: float
    processes: int
    threads: int
    #: RSS per process in MB: the main one, then its children.
    breakdown: str

    @staticmethod
    def of(processes: Sequence[psutil.Process]) -> Memory:
        """The tree's memory; ``processes`` starts with the main process."""
        rss = pss = 0.0
        threads = 0
        sizes = []
        for proc in processes:
            try:
                info = proc.memory_full_info()
                threads += proc.num_threads()
            except psutil.NoSuchProcess:
                continue
            sizes.append(info.rss / 2**20)
            rss += info.rss
            pss += getattr(info, "pss", info.uss)
        shown = f"main {sizes[0]:.0f}" if sizes else "none"
        if len(sizes) > 1:
            shown += " + children " + ", ".join(f"{size:.0f}" for size in sizes[1:])
        return Memory(rss / 2**20, pss / 2**20, len(sizes), threads, shown)

    def peak(self, other: Memory) -> Memory:
        return other if other.rss_mb > self.rss_mb else self


class WorkerProcess:
    """A worker started with its framework's CLI; ``launched_at`` is ``time.perf_counter()``."""

    def __init__(self, command: list[str], env: RunEnv, log_path: Path, profile: Path | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.launched_at = time.perf_counter()
        self.process = subprocess.Popen(
            _under_profiler(command, profile),
            env=process_env(env),
            cwd=FRAMEWORKS_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._profiled = profile is not None

    def _target(self) -> psutil.Process | None:
        """The worker's own main process (py-spy's child when profiled)."""
        try:
            leader = psutil.Process(self.process.pid)
            if not self._profiled:
                return leader
            children = leader.children()
            return children[0] if children else None
        except psutil.NoSuchProcess:
            return None

    def tree(self) -> list[psutil.Process]:
        main = self._target()
        if main is None:
            return []
        try:
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def memory(self) -> Memory:
        return Memory.of(self.tree())

    @contextmanager
    def peak_memory(self, interval: float = 0.25) -> Iterator[list[Memory]]:
        """Sample the tree's memory in a thread; the list holds the peak when the block ends."""
        peak = [self.memory()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(interval):
                peak[0] = peak[0].peak(self.memory())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield peak
        finally:
            done.set()
            thread.join()
            peak[0] = peak[0].peak(self.memory())

    def check_alive(self) -> None:
        if _exit_status(self.process) is not None:
            raise RuntimeError(f"worker exited (status {_exit_status(self.process)}): {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:]) or "(no output)"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the worker (warm shutdown), wait, then kill whatever is left of its session."""
        try:
            main = self._target()
            if main is not None and _exit_status(self.process) is None:
                main.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
        finally:
            _finish(self.process, timeout)
            self._log.close()


def _exit_status(process: subprocess.Popen[Any]) -> int | None:
    """The session leader's exit status if it has exited, without reaping it: while it is not
    reaped its pid, and so its session's group id, cannot be given to another process."""
    if process.returncode is not None:
        return process.returncode  # reaped already
    info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return None if info is None else info.si_status


def _finish(
    process: subprocess.Popen[Any], timeout: float, watch: Callable[[], None] | None = None
) -> int | None:
    """Wait up to ``timeout`` s for the leader to exit, kill what is left of its session, reap
    it; its exit status, or None when it had to be killed. ``watch`` is called while waiting;
    what it raises ends the wait (and the process)."""
    deadline = time.monotonic() + timeout
    try:
        while (status := _exit_status(process)) is None and time.monotonic() < deadline:
            if watch is not None:
                watch()
            time.sleep(0.02)
    finally:
        _kill_and_reap(process)
    return status


def _kill_and_reap(process: subprocess.Popen[Any]) -> None:
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def run_client(
    framework: str,
    operation: str,
    env: RunEnv,
    params: dict[str, Any],
    out_dir: Path,
    timeout: float,
    profile: Path | None = None,
    worker: WorkerProcess | None = None,
) -> dict[str, Any]:
    """Run one client operation (``frameworks/client.py``) in a process of its own; its result.

    Raises :class:`Unavailable` when the framework lacks the feature, and RuntimeError (with the
    client's output) when it fails, takes longer than ``timeout`` seconds, or ``worker`` dies.
    """
    out = out_dir / f"client-{framework}-{operation}-{time.monotonic_ns()}.json"
    log = out.with_suffix(".log")
    command = [
        sys.executable,
        str(FRAMEWORKS_DIR / "client.py"),
        framework,
        operation,
        json.dumps(params),
        str(out),
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            _under_profiler(command, profile),
            env=process_env(env),
            cwd=FRAMEWORKS_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        code = _finish(process, timeout, worker.check_alive if worker is not None else None)
    if code != 0 or not out.exists():
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
        status = f"timed out after {timeout:.0f} s" if code is None else f"exited with {code}"
        raise RuntimeError(f"{framework} client {operation} {status}:\n{tail}")
    result = json.loads(out.read_text())
    if "unavailable" in result:
        raise Unavailable(result["unavailable"])
    return result
