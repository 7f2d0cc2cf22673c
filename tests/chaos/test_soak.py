"""Soak: 200,000 tasks through one real ``kq worker`` (Redis broker and result backend), every
result stored, the worker's resident memory sampled every second: it must stay flat.

How it is judged, and why:

- **Warm-up** is the first 20% of the tasks (40,000). RSS climbs while it lasts, for reasons
  that are not leaks: the pool's threads start, connection pools fill, lazily imported modules
  and per-task caches load, and Python's allocator takes the arenas it will reuse from then on.
- **Growth** compares the median RSS of the first 10 samples after warm-up with the median of
  the last 10 samples of the run. Medians, not single samples, so that one sample taken during a
  garbage-collector pass or while a batch of results is held does not decide the verdict. The
  bound is 5%: on a worker of about 50 MB that is 2.5 MB over 160,000 tasks, so a leak of some
  16 bytes per task would fail it.
- **RSS** is summed over the worker and its child processes (``KQ_SOAK_POOL=prefork`` runs the
  same soak on a prefork pool of 2 children, whose pages shared with the parent count once per
  process: the sum over-counts, but steadily, which is all a growth ratio needs).

The test publishes with ``app.send_many`` in batches of 2,000 while the worker runs, keeping
at most 20,000 messages waiting. The worker only ever holds its prefetch (concurrency x
prefetch multiplier), so the backlog sits in Redis either way; publishing during the run keeps
the worker fetching, running, storing and acking at a steady pace from start to end (the load
whose memory is in question) instead of draining one pre-published pile, and keeps the queue's
share of Redis's memory small. Results are kept 10 minutes (``result_expires``), read back in one
``GroupResult.get()`` at the end (every value must be there), and deleted with the test's key prefix.

Each sample is written to ``soak-rss.csv`` in the test's directory, and also to the path in
``KQ_SOAK_CSV`` when it is set: ``tests/chaos/plot_soak.py`` turns it into the chart in
docs/reliability.md. ``KQ_SOAK_TASKS`` changes the number of tasks (for a longer soak).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import psutil
import pytest

from kq import App, GroupResult, signature
from kq.testing.servers import delete_redis_keys, hold
from kq.testing.worker import WorkerProcess

# The soak measures the worker's memory over minutes: it runs apart from the parallel tests.
pytestmark = pytest.mark.serial

APPS = Path(__file__).parent / "apps"
TASKS = int(os.environ.get("KQ_SOAK_TASKS", "200000"))
#: ``threads`` at its default concurrency, or ``prefork`` with 2 children.
POOL = os.environ.get("KQ_SOAK_POOL", "threads")
BATCH = 2_000
BACKLOG = 20_000
WARM_UP = 0.2
WINDOW = 10
MAX_GROWTH = 0.05


@attrs.frozen
class Sample:
    seconds: float  # since the worker was ready
    tasks_done: int  # published minus waiting: a message the worker holds counts as done
    rss_mb: float  # summed over the worker and its children
    processes: int


class RssSampler:
    """Samples the RSS of process ``pid`` and its children every second, in a thread, along
    with ``progress()`` (tasks done so far), until :meth:`stop`."""

    def __init__(self, pid: int, progress: Callable[[], int]) -> None:
        self.samples: list[Sample] = []
        self._process = psutil.Process(pid)
        self._progress = progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kq-soak-rss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        return self.samples

    def _run(self) -> None:
        started = time.monotonic()
        while True:
            try:
                tree = [self._process, *self._process.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree)
            except psutil.NoSuchProcess:
                return
            self.samples.append(
                Sample(
                    round(time.monotonic() - started, 2), self._progress(), round(rss / 2**20, 2), len(tree)
                )
            )
            if self._stop.wait(1.0):
                return


@attrs.frozen
class Verdict:
    """RSS after warm-up against RSS at the end (see the module docstring)."""

    warm_mb: float
    end_mb: float
    #: Index of the first sample after warm-up, and the size of the two median windows.
    first: int
    window: int

    @property
    def growth(self) -> float:
        return self.end_mb / self.warm_mb - 1

    @classmethod
    def of(cls, samples: Sequence[Sample], tasks: int) -> Verdict:
        first = next((i for i, s in enumerate(samples) if s.tasks_done >= WARM_UP * tasks), len(samples))
        after = samples[first:]
        # A machine fast enough to finish in under 20 s after warm-up gets smaller windows.
        window = min(WINDOW, len(after) // 2)
        assert window >= 2, f"only {len(after)} samples after warm-up: too few to judge growth"
        return cls(
            statistics.median(s.rss_mb for s in after[:window]),
            statistics.median(s.rss_mb for s in after[-window:]),
            first,
            window,
        )

    def phase(self, index: int, count: int) -> str:
        """What sample ``index`` of ``count`` is to the verdict (a column of the CSV)."""
        if index < self.first:
            return "warm-up"
        if index < self.first + self.window:
            return "start-window"
        return "end-window" if index >= count - self.window else "measured"


def write_csv(path: Path, samples: Sequence[Sample], verdict: Verdict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["seconds", "tasks_done", "rss_mb", "processes", "phase"])
        for n, s in enumerate(samples):
            writer.writerow([s.seconds, s.tasks_done, s.rss_mb, s.processes, verdict.phase(n, len(samples))])


@pytest.fixture
def soak_redis() -> Iterator[tuple[str, str]]:
    """``(url, key prefix)``: Redis database 15 under a prefix of the test's own, with the
    server lock held shared; the prefix's keys (200,000 results) are deleted afterwards."""
    prefix = f"kqsoak-{uuid.uuid4().hex[:12]}:"
    with hold("redis") as (host, port):
        yield f"redis://{host}:{port}/15", prefix
        delete_redis_keys(prefix, host=host, port=port)


def test_soak_rss_stays_flat(
    tmp_path: Path, soak_redis: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, prefix = soak_redis
    queue = f"soak-{uuid.uuid4().hex[:8]}"
    settings = {
        "broker_url": url,
        "result_backend": url,
        "task_default_queue": queue,
        "broker_transport_options": {"global_keyprefix": prefix},
        "result_backend_options": {"global_keyprefix": prefix},
        "result_expires": 600,
    }
    env = {
        f"KQ_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in settings.items()
    }
    pool = ["-P", "prefork", "-c", "2"] if POOL == "prefork" else ["-P", POOL]
    worker = WorkerProcess(
        "soak_app:app",
        ["-n", "soak@test", *pool],
        env={**env, "PYTHONPATH": str(APPS)},
        cwd=str(APPS),
        log_path=str(tmp_path / "worker.log"),
    )
    client = App("soak-client", **settings)
    publisher, watcher = client.new_transport(), client.new_transport()
    published = 0
    sampler = None
    try:
        sampler = RssSampler(worker.start().pid, lambda: published - watcher.depth(queue))
        started = time.monotonic()
        sampler.start()
        results = []
        while published < TASKS:
            while publisher.depth(queue) > BACKLOG:
                assert worker.process is not None and worker.process.poll() is None, worker.output()
                time.sleep(0.05)
            batch = client.send_many(
                signature("soak.echo", args=(n,)) for n in range(published, min(published + BATCH, TASKS))
            )
            results.extend(batch)
            published += len(batch)
        values = GroupResult(None, results, app=client).get(timeout=120)
        wall = time.monotonic() - started
        samples = sampler.stop()
        assert worker.stop() == 0, worker.output()
    finally:
        if sampler is not None:
            sampler.stop()
        worker.__exit__(None, None, None)
        publisher.close()
        watcher.close()
        client.close()

    assert values == list(range(TASKS))
    verdict = Verdict.of(samples, TASKS)
    write_csv(tmp_path / "soak-rss.csv", samples, verdict)
    if os.environ.get("KQ_SOAK_CSV"):
        write_csv(Path(os.environ["KQ_SOAK_CSV"]), samples, verdict)
    with capsys.disabled():  # the figures belong in every run's output, CI's included
        print(
            f"\nsoak ({POOL}): {TASKS:,} tasks in {wall:.1f} s ({TASKS / wall:,.0f} tasks/s); "
            f"RSS {verdict.warm_mb:.1f} MB after warm-up, {verdict.end_mb:.1f} MB at the end "
            f"({verdict.growth:+.2%}); peak {max(s.rss_mb for s in samples):.1f} MB; "
            f"{len(samples)} samples in {tmp_path / 'soak-rss.csv'}"
        )
    assert verdict.growth < MAX_GROWTH, (
        f"worker RSS grew {verdict.growth:.1%} after warm-up ({verdict.warm_mb:.1f} -> "
        f"{verdict.end_mb:.1f} MB), more than {MAX_GROWTH:.0%}: see {tmp_path / 'soak-rss.csv'}"
    )
