"""What is special to kq-filesystem: its URL and options, the files it leaves, names of any
key, clean-up of what crashed writers leave, and chords and unique tasks through a worker."""

from __future__ import annotations

import os
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kq import App, chord
from kq.backend import StoredResult
from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq.states import SUCCESS
from kq.testing.imports import imported_on_load
from kq.testing.worker import worker_thread
from kq_filesystem.backend import FilesystemBackend, directory_of, file_name


@pytest.fixture
def make(tmp_path: pathlib.Path) -> Iterator[Callable[..., FilesystemBackend]]:
    """``make(**options)``: a backend on the test's directory, made as kq makes it."""
    made: list[Any] = []

    def make_backend(**options: Any) -> FilesystemBackend:
        url = f"file://{tmp_path}"
        backend = get_plugins().backend_for(url).factory(url, options)
        made.append(backend)
        return backend

    yield make_backend
    for backend in made:
        backend.close()


def files(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_backend_module_is_imported_only_when_a_backend_is_made() -> None:
    assert imported_on_load("kq_filesystem.backend") == []


def test_url_forms() -> None:
    assert directory_of("file:///var/lib/kq/results") == "/var/lib/kq/results"
    assert directory_of("file://localhost/var/lib/kq/") == "/var/lib/kq"
    assert directory_of("FILE:///srv/with%20space") == "/srv/with space"
    for bad, message in [
        ("file://nfs-server/export", "names the host"),
        ("file://", "no absolute directory"),
        ("redis://h/0", "not a file://"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            directory_of(bad)


def test_options_are_checked(make: Callable[..., FilesystemBackend], tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown file:// backend options fsnyc"):
        make(fsnyc=False)
    with pytest.raises(ConfigurationError, match="fanout must be 0, 1, 2 or 3"):
        make(fanout=4)
    with pytest.raises(ConfigurationError, match="fsync must be true or false"):
        make(fsync="sometimes")
    assert make(fsync="false").fsync is False
    with pytest.raises(ConfigurationError, match="does not exist; create it"):
        FilesystemBackend(f"file://{tmp_path / 'missing'}")


def test_every_process_must_use_the_directory_s_fanout(
    make: Callable[..., FilesystemBackend], tmp_path: pathlib.Path
) -> None:
    make(fanout=2)
    make(fanout="2")  # as it comes from the environment
    with pytest.raises(ConfigurationError, match="laid out with fanout=2; this backend has fanout=1"):
        make()
    assert (tmp_path / ".kq-filesystem").read_text() == "fanout=2\n"


@pytest.mark.parametrize(("fanout", "fsync"), [(0, False), (1, True), (2, False)])
def test_a_result_is_one_file_at_the_fanout_depth(
    make: Callable[..., FilesystemBackend], tmp_path: pathlib.Path, fanout: int, fsync: bool
) -> None:
    backend = make(fanout=fanout, fsync=fsync)
    task_id = str(uuid.uuid4())
    backend.store(StoredResult(task_id, SUCCESS, b'{"status": "SUCCESS"}'), ttl=None)
    [result] = [f for f in files(tmp_path) if f.startswith("results")]
    parts = pathlib.PurePath(result).parts
    assert parts[0] == "results" and parts[-1] == f"celery-task-meta-{task_id}"
    assert len(parts) == 2 + fanout and all(len(level) == 2 for level in parts[1:-1])
    assert (tmp_path / result).read_bytes().endswith(b'\n{"status": "SUCCESS"}')
    # counters and claims work at every depth, and no temporary file is left behind
    assert [backend.incr("chord"), backend.incr("chord")] == [1, 2]
    assert backend.claim("unique", "a", 60) is None and backend.claim("unique", "b", 60) == "a"
    assert not [f for f in files(tmp_path) if os.path.basename(f).startswith(".tmp-")]


@pytest.mark.parametrize(
    "task_id", ["a/b/../../../../escape", "..", ".hidden", "ünïcode id", "x" * 300, "50%", "%35%30%25"]
)
def test_any_task_id_is_a_file_inside_the_directory(
    make: Callable[..., FilesystemBackend], tmp_path: pathlib.Path, task_id: str
) -> None:
    backend = make()
    stored = StoredResult(task_id, SUCCESS, task_id.encode())
    backend.store(stored, ttl=60)
    assert backend.get(task_id) == stored
    [result] = [f for f in files(tmp_path) if f.startswith("results")]
    name = os.path.basename(result)
    assert len(pathlib.PurePath(result).parts) == 3 and not name.startswith(".") and len(name) <= 200
    backend.forget(task_id)
    assert backend.get(task_id) is None


def test_file_names_are_distinct() -> None:
    keys = ["a b", "a%20b", "a%2520b", ".x", "%2Ex", "x" * 250, "x" * 251, "é", "%C3%A9"]
    assert len({file_name(key) for key in keys}) == len(keys)


def test_a_file_it_did_not_write_reads_as_missing_and_is_left_alone(
    make: Callable[..., FilesystemBackend],
) -> None:
    backend = make()
    task_id = uuid.uuid4().hex
    path = pathlib.Path(backend.path("results", backend.key(task_id)))
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"status": "SUCCESS", "result": 1}')
    assert backend.get(task_id) is None
    assert backend.cleanup() == 0
    assert path.exists()


def test_cleanup_deletes_what_expired_and_what_dead_writers_left(
    make: Callable[..., FilesystemBackend], tmp_path: pathlib.Path
) -> None:
    backend = make()
    kept, expired = StoredResult("kept", SUCCESS, b"k"), StoredResult("expired", SUCCESS, b"e")
    backend.store(kept, ttl=None)
    backend.store(expired, ttl=0.01)
    backend.incr("counter", expires=0.01)
    backend.incr("lasting")
    backend.claim("claim", "holder", 0.01)
    bucket = pathlib.Path(backend.path("results", backend.key("kept"))).parent
    stale, fresh = bucket / ".tmp-stale", bucket / ".tmp-fresh"
    stale.write_bytes(b"half a result")
    fresh.write_bytes(b"being written now")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    time.sleep(0.05)
    assert backend.cleanup() == 3  # the result, the counter, the claim
    assert backend.get("kept") == kept and backend.get("expired") is None
    assert not stale.exists() and fresh.exists()
    assert backend.incr("lasting") == 2 and backend.incr("counter") == 1
    left = [f for f in files(tmp_path) if not os.path.basename(f).startswith(".")]
    assert sorted(pathlib.PurePath(f).parts[0] for f in left) == ["counters", "counters", "results"]


def test_cleanup_keeps_a_result_stored_again_after_it_expired(make: Callable[..., FilesystemBackend]) -> None:
    backend = make()
    backend.store(StoredResult("again", SUCCESS, b"old"), ttl=0.01)
    time.sleep(0.05)
    fresh = StoredResult("again", SUCCESS, b"new")
    backend.store(fresh, ttl=60)
    assert backend.cleanup() == 0
    assert backend.get("again") == fresh


@pytest.fixture
def kq_backend_url(tmp_path: pathlib.Path) -> str:
    results = tmp_path / "results"
    results.mkdir()
    return f"file://{results}"


def test_a_chord_and_a_unique_task_through_a_worker(kq_app: App, kq_backend_url: str) -> None:
    """The chord counts its header in a counter file; the unique task holds a claim file."""

    @kq_app.task(name="fs.add")
    def add(x: int, y: int) -> int:
        return x + y

    @kq_app.task(name="fs.total")
    def total(values: list[int]) -> int:
        return sum(values)

    @kq_app.task(name="fs.slow", unique_for=60)
    def slow(n: int) -> int:
        time.sleep(0.5)
        return n

    with worker_thread(kq_app, pool="threads", concurrency=4):
        result = chord([add.s(i, i) for i in range(100)])(total.s())
        assert result.get(timeout=60) == sum(2 * i for i in range(100))
        first, second = slow.delay(7), slow.delay(7)
        assert second.id == first.id
        assert first.get(timeout=30) == 7
        assert slow.delay(7).id != first.id  # released when it finished


def test_a_claim_file_a_crash_left_empty_is_taken_over(make: Callable[..., FilesystemBackend]) -> None:
    backend = make(fsync=False)
    assert backend.claim("unique", "before the crash", 60) is None
    pathlib.Path(backend.path("claims", "unique")).write_bytes(b"")  # what ext4 may leave
    assert backend.claim("unique", "after", 60) is None
    assert backend.claim("unique", "third", 60) == "after"
    pathlib.Path(backend.path("claims", "unique")).write_bytes(b"")
    backend.release("unique", "after")  # not the holder any more: left alone
    assert backend.cleanup() == 1
    assert backend.claim("unique", "fourth", 60) is None
