"""SQLite, the embedded default broker, on a full disk (issue 11).

The broker and result backend file lives on a small tmpfs of its own. With a real ``kq worker``
running acks_late tasks, a filler file takes the disk's space and the client publishes until
the disk is full. What must hold:

- the publish that fails raises ``BrokerUnavailable`` naming the file and saying the disk is
  full, and writes nothing (no half-published message ever runs);
- the worker rides it out: results it cannot store are retried for ``result_store_timeout``
  then given back; a give-back it cannot write leaves the message leased, to come back after
  ``visibility_timeout``; it reconnects with backoff and does not exit;
- once the filler is deleted, publishing works again, every task whose publish returned runs
  (at least once: the repeats are redeliveries, counted), the WAL checkpoints, and
  ``PRAGMA integrity_check`` is ok.

Takes about 12 s (needs root for the mount, and PostgreSQL for the ledger).
"""

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kq import App
from kq.exceptions import BrokerUnavailable
from kq.testing.servers import under_ci
from kq.testing.worker import WorkerProcess

from .harness import APPS, Ledger, check, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]

DISK_SIZE = "4m"
#: What the filler leaves free: room for a few dozen publishes before the disk is full.
HEADROOM = 256 * 1024
#: Short, so the messages whose give-back could not be written come back within the test.
VISIBILITY_TIMEOUT = 8
#: The worker gives up storing a result (and gives its message back) after this many seconds.
RESULT_STORE_TIMEOUT = 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK_SIZE`` mounted for the test (needs root: skipped without it, except
    under CI, which runs as root and must not pass quietly)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "kq-full-disk", str(mount)],
            capture_output=True,
            text=True,
        )
        error = done.stderr.strip() if done.returncode else ""
    except OSError as exc:  # no mount command
        error = str(exc)
    if error:
        reason = f"cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): {error}"
        if under_ci():
            pytest.fail(f"{reason} (CI runs the chaos tests as root)")
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Take all but ``leave`` bytes of ``disk`` with a filler file; deleting it frees them."""
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - leave))
    return filler


def test_full_disk_fails_publishes_clearly_and_loses_nothing(
    small_disk: Path, ledger: Ledger, tmp_path: Path
) -> None:
    db = small_disk / "kq.sqlite3"
    url = f"sqlite:///{db}"
    gate = tmp_path / "gate"
    env = {
        "KQ_BROKER_URL": url,
        "KQ_RESULT_BACKEND": url,
        "PYTHONPATH": str(APPS),
        "KQ_RESULT_STORE_TIMEOUT": str(RESULT_STORE_TIMEOUT),
        "KQ_BROKER_TRANSPORT_OPTIONS": json.dumps({"visibility_timeout": VISIBILITY_TIMEOUT}),
        **ledger.env(),
    }
    client = App("client", broker_url=url, result_backend=url, task_publish_retries=1)
    worker = WorkerProcess(
        "full_disk_app:app",
        ["-P", "threads", "-c", "2", "-n", "full-disk@test"],
        env=env,
        cwd=str(APPS),
        log_path=str(tmp_path / "worker.log"),
    )
    try:
        with worker:
            done = client.send_task("disk.record", [-1])
            assert done.get(timeout=30) == -1
            # Two tasks hold the pool, their messages leased and their results not stored yet.
            held = [client.send_task("disk.gated", [str(gate)]) for _ in range(2)]
            wait_until(lambda: ledger.distinct() == 3, 30, "both gated tasks running")

            filler = fill(small_disk, HEADROOM)
            published = []
            with pytest.raises(BrokerUnavailable) as full:
                for n in range(100_000):  # the disk is full long before
                    published.append(client.send_task("disk.record", [n]))
            assert str(db) in str(full.value) and "the disk is full" in str(full.value)
            assert published, "the headroom took no publish at all"

            # The worker on the full disk: results, acks and give-backs cannot be written.
            gate.touch()
            wait_until(
                lambda: "could not store the result" in worker.output(),
                30,
                "the worker giving up storing a result",
            )
            wait_until(
                lambda: "broker connection lost" in worker.output(),
                30,
                "the worker backing off from the full broker file",
            )
            assert "the disk is full" in worker.output()
            assert worker.process.poll() is None, worker.output()
            # Reading still works: stored results, and a new connection that opens the file.
            assert client.AsyncResult(done.id).get(timeout=10) == -1
            reader = sqlite3.connect(db)
            try:
                assert reader.execute("SELECT count(*) FROM kq_messages").fetchone()[0] >= len(published)
            finally:
                reader.close()

            filler.unlink()
            after = [client.send_task("disk.record", [n]) for n in range(10)]
            expected = [result.id for result in [done, *held, *published, *after]]
            wait_until(lambda: ledger.distinct() == len(expected), 60, "every task to run")
            assert [r.get(timeout=60) for r in published] == list(range(len(published)))
            assert [r.get(timeout=60) for r in after] == list(range(10))
            assert [r.get(timeout=60) for r in held] == [None, None]
            assert worker.stop() == 0, worker.output()
    finally:
        client.close()

    verdict = check(expected, ledger.runs())
    assert not verdict.lost
    assert verdict.runs == len(expected) + verdict.repeats
    # Nothing ran that was not published, and every repeat is a redelivery of a message whose
    # result, ack or give-back could not be written while the disk was full.
    assert {run.task_id for run in ledger.runs()} == set(expected)
    assert all(run.redelivered for runs in verdict.duplicates.values() for run in runs[1:])
    print(
        f"\nfull disk: {len(published)} publishes before it filled, {len(expected)} tasks, "
        f"{verdict.runs} runs ({verdict.repeats} repeats, all redeliveries)"
    )

    # The file is sound and its WAL checkpoints again (and is emptied) now there is room.
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)
        assert conn.execute("SELECT count(*) FROM kq_messages").fetchone()[0] == 0
    finally:
        conn.close()
