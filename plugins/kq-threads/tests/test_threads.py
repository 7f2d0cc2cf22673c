"""What is special about threads: its own threads, daemon, and what shutdown drops."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq.pool import Job, Outcome, PoolContext
from kq.testing.contracts.pool import Probe, Recorder, make_job, wait_until
from kq_threads import DEFAULT_CONCURRENCY, ThreadPool


@pytest.fixture
def pools() -> Iterator[list[ThreadPool]]:
    made: list[ThreadPool] = []
    yield made
    for pool in made:
        pool.shutdown(wait=True)


def threads(pools: list[ThreadPool], runner: Probe, concurrency: int) -> ThreadPool:
    pool = ThreadPool(PoolContext(concurrency=concurrency, runner=runner))
    pools.append(pool)
    pool.start()
    return pool


def test_default_concurrency_suits_io_bound_work() -> None:
    spec = get_plugins().pools.get("threads")
    assert spec.default_concurrency == DEFAULT_CONCURRENCY
    assert 5 <= DEFAULT_CONCURRENCY <= 32


def test_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="worker_concurrency"):
        ThreadPool(PoolContext(concurrency=0, runner=Probe(1)))


def test_jobs_run_in_the_pool_threads_not_the_submitting_one(pools: list[ThreadPool]) -> None:
    probe = Probe(3)
    pool = threads(pools, probe, 3)
    recorder = Recorder(pool)
    for batch in range(10):
        for n in range(3):
            pool.submit(make_job(3 * batch + n, sleep=0.002), recorder.on_done)
        assert len(recorder.wait_for(3 * batch + 3)) == 3 * batch + 3
    ran_in = set(probe.threads.values())
    assert len(ran_in) <= 3
    assert threading.get_ident() not in ran_in


def test_a_failing_on_done_is_logged_and_the_thread_goes_on(
    pools: list[ThreadPool], caplog: pytest.LogCaptureFixture
) -> None:
    pool = threads(pools, Probe(1), 1)
    recorder = Recorder(pool)

    def broken(job: Job, outcome: Outcome) -> None:
        raise ValueError("worker bug")

    pool.submit(make_job(1), broken)
    assert wait_until(lambda: pool.free_slots() == 1)
    pool.submit(make_job(2), recorder.on_done)
    assert [job.ticket for job, _ in recorder.wait_for(1)] == [2]
    assert "on_done failed" in caplog.text


def test_shutdown_without_wait_drops_queued_jobs_and_reports_nothing(
    pools: list[ThreadPool],
) -> None:
    probe = Probe(1)
    pool = threads(pools, probe, 1)
    recorder = Recorder(pool)
    pool.submit(make_job(1, hold=True), recorder.on_done)
    assert probe.wait_started(1)
    pool.submit(make_job(2), recorder.on_done)  # beyond free_slots: queued, never started
    pool.shutdown(wait=False)
    probe.release()
    assert wait_until(lambda: 1 in probe.returned)
    time.sleep(0.1)
    assert probe.started == 1
    assert recorder.calls == []


def test_interpreter_exits_without_waiting_for_a_running_task() -> None:
    """A worker killed by a second Ctrl-C must not hang on a task that may never end."""
    script = textwrap.dedent(
        """
        import time
        from kq.pool import PoolContext
        from kq.testing.contracts.pool import make_job
        from kq_threads import ThreadPool

        def stuck(job):
            time.sleep(60)

        pool = ThreadPool(PoolContext(concurrency=2, runner=stuck))
        pool.start()
        pool.submit(make_job(1), print)
        time.sleep(0.1)
        """
    )
    begin = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], timeout=30, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert time.monotonic() - begin < 20
