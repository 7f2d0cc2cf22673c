"""The chaos harness: real worker processes under a supervisor, faults on a schedule, and a
ledger in PostgreSQL that says what ran.

- :class:`Ledger`: a table of its own in PostgreSQL where each task records its execution
  (task id, redelivered flag, pid, time) before it returns (``apps/chaos_app.py``). Written by
  the task, not by the test from results, so a run whose result or ack was lost is still on
  record: that is how duplicates are seen.
- :class:`Supervisor`: keeps K ``kq worker`` processes running and starts a new one when one
  dies, as systemd or supervisord would (also killing what the dead one left in its process
  group, like systemd's ``KillMode=control-group``).
- :class:`Chaos`: a background thread that calls fault functions every N seconds.
- :func:`check`: the ledger against the published ids: lost ids, and the ids that ran more
  than once; :func:`explain` says why each repeat happened, from the faults injected.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import attrs
import psycopg
from psycopg import sql

#: Where worker processes find the chaos apps (``-A chaos_app:app``).
APPS = Path(__file__).parent / "apps"
#: The ledger's database: the test PostgreSQL (trust authentication).
LEDGER_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


# -- the ledger ------------------------------------------------------------------------------


@attrs.frozen
class Run:
    """One execution of a task, as the task recorded it."""

    task_id: str
    redelivered: bool
    pid: int
    at: float  # Unix time, PostgreSQL's clock (the same machine's)


class Ledger:
    """A ledger table of its own (``chaos_ledger_<hex>``), dropped by :meth:`create` on exit."""

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn = dsn
        self.table = table
        self._db = psycopg.connect(dsn, autocommit=True)

    @classmethod
    @contextmanager
    def create(cls, dsn: str = LEDGER_DSN) -> Iterator[Ledger]:
        ledger = cls(dsn, f"chaos_ledger_{uuid.uuid4().hex[:12]}")
        ledger._execute(
            "CREATE TABLE {} (task_id text NOT NULL, redelivered boolean NOT NULL, "
            "pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        try:
            yield ledger
        finally:
            ledger._execute("DROP TABLE IF EXISTS {}")
            ledger._db.close()

    def env(self) -> dict[str, str]:
        """The variables a worker process running ``chaos_app`` needs to write here."""
        return {"KQ_CHAOS_LEDGER_DSN": self.dsn, "KQ_CHAOS_LEDGER_TABLE": self.table}

    def distinct(self) -> int:
        """How many different tasks ran."""
        return self._execute("SELECT count(DISTINCT task_id) FROM {}").fetchone()[0]

    def runs(self) -> list[Run]:
        """Every recorded run, in the order they were recorded."""
        rows = self._execute(
            "SELECT task_id, redelivered, pid, extract(epoch FROM at) FROM {} ORDER BY at"
        ).fetchall()
        return [Run(task_id, redelivered, pid, float(at)) for task_id, redelivered, pid, at in rows]

    def _execute(self, statement: str) -> psycopg.Cursor:
        return self._db.execute(sql.SQL(statement).format(sql.Identifier(self.table)))


# -- checking the ledger ---------------------------------------------------------------------


@attrs.frozen
class Verdict:
    """The ledger against the published ids."""

    published: int
    runs: int
    #: Published ids with no run on record.
    lost: frozenset[str]
    #: Ids that ran more than once, with their runs in order.
    duplicates: Mapping[str, tuple[Run, ...]]

    @property
    def repeats(self) -> int:
        """Runs beyond the first of their task."""
        return sum(len(runs) - 1 for runs in self.duplicates.values())


def check(published: Iterable[str], runs: Iterable[Run]) -> Verdict:
    by_id: dict[str, list[Run]] = {}
    for run in runs:
        by_id.setdefault(run.task_id, []).append(run)
    ids = set(published)
    return Verdict(
        published=len(ids),
        runs=sum(len(r) for r in by_id.values()),
        lost=frozenset(ids - by_id.keys()),
        duplicates={i: tuple(r) for i, r in by_id.items() if len(r) > 1},
    )


#: Seconds within which a worker acks an acks_late task after it ran (in its next broker round
#: trip, a few ms; longer while the broker is away): a process killed later than that had acked.
ACK_WINDOW = 5.0


def explain(
    verdict: Verdict, killed: Mapping[int, float], outages: Sequence[tuple[float, float]] = ()
) -> dict[str, list[tuple[Run, Run]]]:
    """Why each repeated run happened, judged from the run before it; gives each reason the
    (run before, repeat) pairs it explains:

    - ``killed before the ack``: the process that ran it lost its way to the ack (it was
      killed, or its worker process was: ``killed`` maps pid -> Unix time) before the repeat,
      and at most :data:`ACK_WINDOW` seconds after that run;
    - ``broker restart``: a broker outage (``outages``: (start, end) Unix times) began after
      that run and before the repeat: the broker took the unacked message back (RabbitMQ
      requeues what a broken connection held);
    - ``unexplained``: neither fault can have caused it.
    """
    reasons: dict[str, list[tuple[Run, Run]]] = {}
    for runs in verdict.duplicates.values():
        for before, repeat in pairwise(runs):
            cut = killed.get(before.pid)
            if cut is not None and cut <= min(before.at + ACK_WINDOW, repeat.at):
                reason = "killed before the ack"
            elif any(before.at <= end and start <= repeat.at for start, end in outages):
                reason = "broker restart"
            else:
                reason = "unexplained"
            reasons.setdefault(reason, []).append((before, repeat))
    return reasons


# -- faults ----------------------------------------------------------------------------------


@attrs.frozen
class Event:
    at: float  # Unix time
    name: str
    detail: object  # what the fault returned


@attrs.define
class _Fault:
    due: float  # time.monotonic()
    period: float
    name: str
    call: Callable[[], object]


class Chaos:
    """Calls each fault function every N seconds in a background thread, while in its block.

    ``events`` records every call and what it returned; an exception in a fault is kept and
    raised when the block ends, since a fault that silently stopped would void the test.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._faults: list[_Fault] = []
        self._errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kq-chaos", daemon=True)

    def every(self, seconds: float, name: str, fault: Callable[[], object]) -> None:
        """Call ``fault`` every ``seconds``, first ``seconds`` from now."""
        self._faults.append(_Fault(time.monotonic() + seconds, seconds, name, fault))

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(60)
        if self._errors and exc_info[0] is None:
            raise self._errors[0]

    def _loop(self) -> None:
        try:
            while not self._stop.wait(0.05):
                for fault in list(self._faults):
                    if time.monotonic() >= fault.due:
                        fault.due += fault.period
                        self.events.append(Event(time.time(), fault.name, fault.call()))
        except Exception as exc:  # raised in the test by __exit__
            self._errors.append(exc)


# -- servers of the test's own ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A ``redis-server`` of the test's own on a free port, persisting every write to its
    append-only file in ``directory`` before answering (``appendfsync always``), so that a
    restart keeps every message Redis acknowledged. The shared server on 6379 keeps nothing
    on disk (DESIGN.md), and a test that restarted it would lose its queue (and other runs')."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ]
        )
        wait_until(lambda: self.ping(), 30, f"redis-server on port {self.port} to answer")

    def stop(self) -> None:
        """Shut the server down (``SHUTDOWN NOSAVE``: no RDB snapshot; the AOF has it all)."""
        if self.process is not None and self.process.poll() is None:
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=30
            )
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def ping(self) -> bool:
        return (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            == "PONG"
        )

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- worker processes ------------------------------------------------------------------------


def process_group(pgid: int) -> list[int]:
    """The pids of the live processes in process group ``pgid`` (Linux: read from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (for a prefork worker: its pool processes), whichever of
    its threads started them (billiard replaces a dead child from a thread of its own)."""
    found = []
    for thread in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (thread / "children").read_text().split()]
        except OSError:
            continue
    return found


class Supervisor:
    """Keeps ``processes`` ``kq worker -A APP ARGS...`` processes running, each in a process
    group of its own, restarting any that dies (checked every 0.1 s).

    ``killed`` maps every pid this harness killed (by :meth:`kill_random`, or as the leftovers
    of a dead worker's group) to when (for the pool children of a killed worker process: when
    their worker was killed, since nothing they run can be acked after that); ``kills`` lists
    (time, pid, role) of :meth:`kill_random`.
    """

    def __init__(
        self,
        app_spec: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
        processes: int = 2,
        ready_marker: str = " ready: ",
    ) -> None:
        self.command = [sys.executable, "-m", "kq", "worker", "-A", app_spec, *args]
        self.env = {**os.environ, "PYTHONPATH": str(APPS), **env}
        self.log_dir = log_dir
        self.ready_marker = ready_marker
        self.slots: list[subprocess.Popen[bytes] | None] = [None] * processes
        self.logs: list[Path] = []
        self.restarts = 0
        self.killed: dict[int, float] = {}
        self.kills: list[tuple[float, int, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="kq-supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        for slot in range(len(self.slots)):
            self._spawn(slot)
        wait_until(
            lambda: all(self.ready_marker in log.read_text(errors="replace") for log in self.logs),
            60,
            "the workers to be ready",
        )
        self._watcher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def kill_random(self, rng: random.Random) -> tuple[int, str]:
        """``kill -9`` one of the worker processes or their pool children, picked at random
        (each process equally likely); returns (pid, "worker" or "pool child")."""
        with self._lock:
            mains = [p.pid for p in self.slots if p is not None and p.poll() is None]
            targets = [(pid, "worker") for pid in mains]
            targets += [(child, "pool child") for pid in mains for child in children(pid)]
            pid, role = rng.choice(targets)
            doomed = children(pid) if role == "worker" else []  # they end, or _watch reaps them
            self._kill(pid)
            for child in doomed:
                self.killed.setdefault(child, self.killed[pid])
            self.kills.append((time.time(), pid, role))
        return pid, role

    def stop(self, timeout: float = 60.0) -> None:
        """Stop restarting; SIGTERM every worker (warm shutdown), then kill what is left."""
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(10)
        with self._lock:
            for process in self.slots:
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in self.slots:
                if process is None:
                    continue
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
                self._reap(process)

    def _spawn(self, slot: int) -> None:
        log = self.log_dir / f"worker{slot}-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "ab") as out:
            self.slots[slot] = subprocess.Popen(
                [*self.command, "-n", f"chaos{slot}-{len(self.logs)}@test"],
                env=self.env,
                cwd=str(APPS),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _kill(self, pid: int) -> None:
        self.killed.setdefault(pid, time.time())
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """Kill what a worker left in its process group (pool children), then reap it."""
        for pid in process_group(process.pid):
            self._kill(pid)
        process.kill()
        process.wait(10)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                for slot, process in enumerate(self.slots):
                    if process is not None and process.poll() is not None and not self._stop.is_set():
                        self._reap(process)
                        self.restarts += 1
                        self._spawn(slot)
