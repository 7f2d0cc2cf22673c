"""What is special to prefork: its options, and children that die, linger or get stray signals."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq.pool import PoolCapabilities, PoolContext
from kq.states import SUCCESS
from kq.testing.contracts.pool import LostRecorder, ProcessProbe, Recorder, make_job, wait_until
from kq.testing.imports import imported_on_load
from kq_prefork.pool import PreforkPool


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[ProcessProbe]:
    probe = ProcessProbe(2, tmp_path / "probe")
    yield probe
    probe.release()


@pytest.fixture
def prefork(probe: ProcessProbe) -> Iterator[Callable[..., PreforkPool]]:
    """``prefork(**context)``: a started pool of two children running ``probe``."""
    made: list[PreforkPool] = []

    def make(**context: Any) -> PreforkPool:
        pool = PreforkPool(
            PoolContext(**{"concurrency": 2, "runner": probe, "lost": LostRecorder(), **context})
        )
        pool.start()
        made.append(pool)
        return pool

    yield make
    probe.release()
    for pool in made:
        pool.shutdown(wait=True)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_spec_declares_a_process_pool_sized_by_cpus() -> None:
    spec = get_plugins().pools.get("prefork")
    assert spec.factory.load() is PreforkPool
    assert spec.default_concurrency is None
    assert spec.capabilities == PoolCapabilities(
        soft_time_limit=True,
        hard_time_limit=True,
        max_tasks_per_child=True,
        autoscale=True,
        processes=True,
        terminate=True,
    )
    assert PreforkPool.capabilities == spec.capabilities


def test_loading_the_plugin_leaves_billiard_for_the_first_pool() -> None:
    assert imported_on_load("kq_prefork", "kq_prefork.pool", "kq_prefork.child") == ["kq_prefork"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"processes": 3}, "no option processes"),
        ({"start_method": "vfork"}, "start_method must be one of"),
        ({"lost_worker_timeout": 0}, "lost_worker_timeout must be a positive"),
    ],
)
def test_bad_options_are_refused_naming_the_setting(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        PreforkPool(PoolContext(concurrency=1, runner=print, options=options))
    assert "worker_pool_options" in str(info.value)


def test_spawn_without_an_app_needs_a_runner_it_can_send() -> None:
    pool = PreforkPool(PoolContext(concurrency=1, runner=lambda job: None, options={"start_method": "spawn"}))
    with pytest.raises(ConfigurationError, match="-A module:app"):
        pool.start()


def test_an_idle_child_killed_does_not_stall_the_pool(
    prefork: Callable[..., PreforkPool], probe: ProcessProbe
) -> None:
    """In billiard, one idle child always waits holding the job pipe's lock; killed
    (``kill -9``, the OOM killer), it takes the lock with it. Ours wait without it, so the
    children that replace them still take jobs."""
    pool = prefork()
    recorder = Recorder(pool)
    pool.submit(make_job(1, barrier=True), recorder.on_done)
    pool.submit(make_job(2, barrier=True), recorder.on_done)
    assert len(recorder.wait_for(2)) == 2
    idle = set(probe.pids.values())
    for child in idle:  # whichever one would hold the lock
        os.kill(child, signal.SIGKILL)
    assert wait_until(lambda: not any(alive(child) for child in idle))
    for ticket in range(3, 13):
        pool.submit(make_job(ticket), recorder.on_done)
        assert len(recorder.wait_for(ticket)) == ticket, f"job {ticket} never ran"
    assert all(outcome.state == SUCCESS for _, outcome in recorder.calls)


def test_a_child_killed_while_sending_a_result_does_not_stall_the_pool(
    prefork: Callable[..., PreforkPool],
) -> None:
    """Children send results up one pipe under one lock shared between processes; in billiard
    a child killed while it holds it (found by tests/chaos: a kill every 2 s hits one now and
    then) takes the lock with it, and no child can report a job again. Ours send a result that
    fits in one atomic pipe write without the lock. Here the test process holds the lock, as a
    dead child would, forever."""
    pool = prefork()
    recorder = Recorder(pool)
    lock = pool._processes._outqueue._wlock
    lock.acquire()
    try:
        for ticket in range(1, 11):
            pool.submit(make_job(ticket), recorder.on_done)
            assert len(recorder.wait_for(ticket)) == ticket, f"job {ticket} was never reported"
    finally:
        lock.release()
    assert all(outcome.state == SUCCESS for _, outcome in recorder.calls)


def test_a_soft_time_limit_signal_between_jobs_is_ignored(
    prefork: Callable[..., PreforkPool], probe: ProcessProbe
) -> None:
    """SIGUSR1 can arrive just after the job it was meant for ended; the child lives on."""
    pool = prefork(concurrency=1)
    recorder = Recorder(pool)
    pool.submit(make_job(1), recorder.on_done)
    recorder.wait_for(1)
    child = probe.pids[1]
    os.kill(child, signal.SIGUSR1)
    time.sleep(0.2)
    pool.submit(make_job(2), recorder.on_done)
    assert [outcome.state for _, outcome in recorder.wait_for(2)] == [SUCCESS, SUCCESS]
    assert probe.pids[2] == child


def test_shutdown_without_wait_ends_busy_children_at_once(
    prefork: Callable[..., PreforkPool], probe: ProcessProbe
) -> None:
    pool = prefork()
    recorder = Recorder(pool)
    pool.submit(make_job(1, hold=True), recorder.on_done)
    assert probe.wait_started(1)
    pool.shutdown(wait=False)
    child = probe.pids[1]
    assert wait_until(lambda: not alive(child)), "the busy child outlived the pool"
    assert recorder.calls == []


def test_max_memory_per_child_replaces_a_child_that_grew(
    prefork: Callable[..., PreforkPool], probe: ProcessProbe
) -> None:
    pool = prefork(concurrency=1, max_memory_per_child=1)  # KiB: every child is above it
    recorder = Recorder(pool)
    for ticket in range(1, 4):
        pool.submit(make_job(ticket), recorder.on_done)
        recorder.wait_for(ticket)
    assert len(set(probe.pids.values())) == 3
