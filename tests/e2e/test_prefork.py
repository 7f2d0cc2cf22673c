"""Real ``kq worker -P prefork`` processes on a SQLite file: time limits that kill and replace a
child, a child killed from outside, warm shutdown, child recycling, autoscale, spawned children.

Tasks in ``apps/prefork_app.py`` write ``<task id> <pid>`` lines to the ledger, so the tests
know which child ran what.
"""

import json
import os
import pathlib
import signal
import time
from collections import Counter

import pytest

from kq.exceptions import TimeLimitExceeded
from kq.testing.worker import WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def start_prefork(start_worker):
    """``start_prefork(ARGS...)``: a ``kq worker -A prefork_app:app -P prefork ARGS...``."""

    def start(*args: str) -> WorkerProcess:
        return start_worker("-P", "prefork", *args, name="prefork", app="prefork_app:app")

    return start


def entries(lines: list[str]) -> list[tuple[str, int]]:
    """Ledger lines as ``(task id, pid)``."""
    return [(task_id, int(pid)) for task_id, pid in (line.split() for line in lines)]


def wait_for(predicate, worker: WorkerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, worker.output()
        assert worker.process.poll() is None, worker.output()
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Alive, as opposed to gone or a zombie (an orphan's new parent may never reap it)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def depth(client, queue: str = "celery") -> int:
    transport = client.new_transport()
    try:
        return transport.depth(queue)
    finally:
        transport.close()


def test_hard_time_limit_kills_the_child_and_a_fresh_one_runs_the_next_tasks(client, start_prefork, ran):
    worker = start_prefork("-c", "1")
    stuck = client.send_task("prefork.spin")  # while True: pass, time_limit=2
    with pytest.raises(TimeLimitExceeded, match="time limit of 2"):
        stuck.get(timeout=60)
    assert stuck.state == "FAILURE"
    [(task_id, killed)] = entries(ran("spinning"))
    assert task_id == stuck.id
    sent = [client.send_task("prefork.pid") for _ in range(100)]
    pids = {result.get(timeout=60) for result in sent}
    assert killed not in pids and len(pids) == 1, pids
    assert worker.stop() == 0


def test_a_child_killed_mid_task_runs_the_task_again_and_the_worker_goes_on(
    client, start_prefork, ran, tmp_path
):
    worker = start_prefork("-c", "2")
    result = client.send_task("prefork.once_then_ok", [str(tmp_path / "first-run")])
    wait_for(lambda: len(ran("started")) == 1, worker)
    [(task_id, child)] = entries(ran("started"))
    os.kill(child, signal.SIGKILL)
    assert result.get(timeout=60) == "ok"  # acks_late + reject_on_worker_lost: it came back
    runs = entries(ran("started"))  # ordered by pid, not by time
    assert [task for task, _ in runs] == [task_id, task_id]
    assert {pid for _, pid in runs} - {child}, "it ran again in the killed child"
    assert "returning it to the queue" in worker.output()
    assert client.send_task("prefork.pid").get(timeout=30) != child
    assert worker.stop() == 0


def test_sigterm_finishes_the_running_tasks_and_returns_the_prefetched_ones(client, start_prefork, ran):
    worker = start_prefork("-c", "10", "--prefetch-multiplier", "5")
    sent = [client.send_task("prefork.sleep", [3.0]) for _ in range(60)]
    wait_for(lambda: len(ran("started")) == 10 and depth(client) == 0, worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.output()
    started, finished = ran("started"), ran("finished")
    assert len(started) == 10 and sorted(finished) == sorted(started)
    assert {r.id for r in sent if r.state == "SUCCESS"} == {task for task, _ in entries(finished)}
    assert depth(client) == 50


def test_a_task_catches_its_soft_time_limit_and_cleans_up(client, start_prefork):
    worker = start_prefork("-c", "2")
    assert client.send_task("prefork.cleans_up").get(timeout=60) == "cleaned up"
    assert worker.stop() == 0


def test_max_tasks_per_child_replaces_children(client, start_prefork):
    worker = start_prefork("-c", "2", "--max-tasks-per-child", "5")
    sent = [client.send_task("prefork.pid") for _ in range(20)]
    tasks_per_child = Counter(result.get(timeout=60) for result in sent)
    assert max(tasks_per_child.values()) <= 5, tasks_per_child
    assert len(tasks_per_child) >= 4, tasks_per_child
    assert worker.pid not in tasks_per_child
    assert worker.stop() == 0


def test_autoscale_grows_the_pool_while_tasks_wait(client, start_prefork, ran):
    worker = start_prefork("--autoscale", "4,1")
    assert "pool prefork x1" in worker.output()
    sent = [client.send_task("prefork.sleep", [1.0]) for _ in range(16)]
    assert [result.get(timeout=120) for result in sent] == [1.0] * 16
    assert "autoscale: grew the pool" in worker.output()
    children = {pid for _, pid in entries(ran("started"))}
    assert 3 <= len(children) <= 4, children
    assert worker.stop() == 0


def test_spawned_children_import_the_app_with_the_command_line_urls(client, start_prefork, env, db_url):
    """Spawned children start from nothing: they import the app from -A and must use the
    broker and backend given on the worker's command line, not only those in KQ_*."""
    del env["KQ_BROKER_URL"], env["KQ_RESULT_BACKEND"]
    env["KQ_WORKER_POOL_OPTIONS"] = json.dumps({"start_method": "spawn"})
    worker = start_prefork("-c", "2", "--broker", db_url, "--result-backend", db_url)
    child = client.send_task("prefork.pid").get(timeout=60)
    assert b"spawn_main" in pathlib.Path(f"/proc/{child}/cmdline").read_bytes()  # not forked
    assert client.send_task("prefork.cleans_up").get(timeout=60) == "cleaned up"
    with pytest.raises(TimeLimitExceeded):
        client.send_task("prefork.spin").get(timeout=60)
    assert worker.stop() == 0


def test_soft_shutdown_timeout_ends_the_busy_children_and_requeues_their_tasks(client, start_prefork, ran):
    worker = start_prefork("-c", "2", "--soft-shutdown-timeout", "1")
    sent = [client.send_task("prefork.sleep", [60.0]) for _ in range(2)]
    wait_for(lambda: len(ran("started")) == 2, worker)
    children = [pid for _, pid in entries(ran("started"))]
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert "abandoning them" in worker.output()
    assert not any(running(child) for child in children), "left to finish unacked tasks"
    assert depth(client) == 2
    assert all(r.state == "PENDING" for r in sent)
