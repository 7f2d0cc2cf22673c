"""What is special to kq-sqlite: URLs, options, the shared file, and real processes sharing it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from kq.backend import StoredResult
from kq.exceptions import ConfigurationError
from kq.testing.contracts.transport import drain, envelope
from kq.testing.imports import imported_on_load
from kq.transport import REJECT_REASON_HEADER, Envelope
from kq_sqlite.backend import SQLiteBackend
from kq_sqlite.transport import SQLiteTransport

# Child processes import the plugin directly and talk over stdout: one line when ready, then
# the message numbers they saw.
CONSUMER = """
import json, os, sys, time
from kq_sqlite.transport import SQLiteTransport
url, stop = sys.argv[1], sys.argv[2]
transport = SQLiteTransport(url)
print("ready", flush=True)
seen = []
while not os.path.exists(stop):
    batch = transport.fetch(["work"], 10, 0.1)
    if batch:
        time.sleep(0.001)  # a little work, so that the others get a turn
        transport.ack(batch)
        seen.extend(d.envelope.headers["n"] for d in batch)
transport.close()
print(json.dumps(seen), flush=True)
"""

HOLDER = """
import sys, time
from kq_sqlite.transport import SQLiteTransport
transport = SQLiteTransport(sys.argv[1], {"visibility_timeout": 1})
batch = transport.fetch(["work"], 10, 10)
print(" ".join(str(d.envelope.headers["n"]) for d in batch), flush=True)
time.sleep(60)
"""

SUBSCRIBER = """
import os, sys
from kq_sqlite.transport import SQLiteTransport
transport = SQLiteTransport(sys.argv[1], {"visibility_timeout": 1})
print(transport.subscribe("control"), flush=True)
os._exit(0)  # die without closing
"""


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kq.sqlite3'}"


@pytest.fixture
def transports() -> Iterator[list[SQLiteTransport]]:
    """Transports made by a test, closed after it."""
    made: list[SQLiteTransport] = []
    yield made
    for transport in made:
        transport.close()


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)


# -- URL and options ----------------------------------------------------------------------


def test_three_slashes_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    transport = SQLiteTransport("sqlite:///data/kq.db")
    transport.close()
    assert transport.path == str(tmp_path / "data" / "kq.db")
    assert (tmp_path / "data" / "kq.db").exists()


def test_four_slashes_is_absolute(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/results.db")
    backend.close()
    assert str(tmp_path).startswith("/")  # so the URL above had four slashes
    assert backend.path == str(tmp_path / "results.db")


@pytest.mark.parametrize("factory", [SQLiteTransport, SQLiteBackend])
def test_missing_directory_is_named(tmp_path: Path, factory: type) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(ConfigurationError, match=str(missing)):
        factory(f"sqlite:///{missing}/kq.db")


@pytest.mark.parametrize(
    "bad",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite://host/kq.db",
        "sqlite:///kq.db?timeout=5",
        "redis:///kq.db",
        "sqlite:kq.db",
    ],
)
def test_bad_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite"):
        SQLiteTransport(bad)


@pytest.mark.parametrize(
    "options",
    [
        {"synchronous": "SOMETIMES"},
        {"visibility_timeout": 0},
        {"visibility_timeout": "soon"},
        {"busy_timeout": True},
        {"visiblity_timeout": 5},
    ],
)
def test_bad_options_are_configuration_errors(url: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        SQLiteTransport(url, options)


def test_backend_refuses_broker_only_options(url: str) -> None:
    with pytest.raises(ConfigurationError, match="visibility_timeout"):
        SQLiteBackend(url, {"visibility_timeout": 5})


def test_options_may_be_strings_as_from_the_environment(url: str, transports: list) -> None:
    transports.append(SQLiteTransport(url, {"visibility_timeout": "2.5", "synchronous": "full"}))


# -- the shared file ----------------------------------------------------------------------


def test_broker_and_backend_share_one_file_in_wal_mode(url: str, tmp_path: Path) -> None:
    transport, backend = SQLiteTransport(url), SQLiteBackend(url)
    transport.close()
    backend.close()
    with closing(sqlite3.connect(tmp_path / "kq.sqlite3")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert {"kq_messages", "kq_broadcast_subscribers", "kq_results", "kq_counters"} <= tables


def test_cleanup_deletes_expired_results_and_counts_them(url: str) -> None:
    backend = SQLiteBackend(url)
    try:
        backend.store_many([StoredResult(f"old{n}", "SUCCESS", b"x") for n in range(3)], ttl=0.01)
        backend.store(StoredResult("kept", "SUCCESS", b"y"), ttl=None)
        time.sleep(0.05)
        assert backend.cleanup() == 3
        assert backend.cleanup() == 0
        assert backend.get("kept") is not None
    finally:
        backend.close()


def test_cleanup_deletes_expired_counters_and_counts_them(url: str, tmp_path: Path) -> None:
    backend = SQLiteBackend(url)
    try:
        for name in ("old1", "old2"):
            backend.incr(name, expires=0.01)
        backend.incr("kept", expires=60)
        backend.incr("forever")
        time.sleep(0.05)
        assert backend.cleanup() == 2
        assert backend.cleanup() == 0
    finally:
        backend.close()
    with closing(sqlite3.connect(tmp_path / "kq.sqlite3")) as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM kq_counters")}
    assert names == {"kept", "forever"}


# -- delivery details ---------------------------------------------------------------------


def test_dead_letter_records_the_reason_and_keeps_the_headers(url: str, transports: list) -> None:
    transport = SQLiteTransport(url)
    transports.append(transport)
    transport.publish("q", envelope(1))
    [got] = drain(transport, ["q"], 1, ack=False)
    transport.reject(got, requeue=False, reason="unknown-task: nope")
    [dead] = drain(transport, ["q.dlq"], 1)
    assert dead.envelope.headers[REJECT_REASON_HEADER] == "unknown-task: nope"
    assert dead.envelope.headers["n"] == 1
    assert not dead.redelivered


def test_redelivered_after_close_and_after_requeue(url: str, transports: list) -> None:
    first, second = SQLiteTransport(url), SQLiteTransport(url)
    transports += [first, second]
    first.publish("q", envelope(1))
    [got] = drain(first, ["q"], 1, ack=False)
    assert not got.redelivered
    first.close()
    [again] = drain(second, ["q"], 1, ack=False)
    assert again.redelivered
    second.reject(again, requeue=True)
    [third] = drain(second, ["q"], 1)
    assert third.redelivered


def test_priority_none_is_kept_and_ranks_as_zero(url: str, transports: list) -> None:
    transport = SQLiteTransport(url)
    transports.append(transport)
    transport.publish("q", envelope(0, priority=None))
    transport.publish("q", envelope(1, priority=0))
    transport.publish("q", envelope(2, priority=42))  # out of range: ranks as 9
    got = drain(transport, ["q"], 3)
    assert [(d.envelope.headers["n"], d.envelope.priority) for d in got] == [(2, 42), (0, None), (1, 0)]


def test_a_busy_first_queue_does_not_starve_the_second(url: str, transports: list) -> None:
    transport = SQLiteTransport(url)
    transports.append(transport)
    transport.publish_many(("busy", envelope(n)) for n in range(50))
    transport.publish("quiet", envelope(99))
    fetched = transport.fetch(["busy", "quiet"], 5, 1) + transport.fetch(["busy", "quiet"], 5, 1)
    assert "quiet" in {d.queue for d in fetched}


def test_close_removes_subscriptions_and_their_messages(url: str, transports: list) -> None:
    subscriber, sender = SQLiteTransport(url), SQLiteTransport(url)
    transports.append(sender)
    queue = subscriber.subscribe("control")
    sender.broadcast("control", envelope(1))
    assert sender.depth(queue) == 1
    subscriber.close()
    assert sender.depth(queue) == 0
    sender.broadcast("control", envelope(2))
    assert sender.depth(queue) == 0


def test_a_subscriber_that_died_unclosed_expires(url: str, transports: list) -> None:
    sender = SQLiteTransport(url)
    transports.append(sender)
    child = spawn(SUBSCRIBER, url)
    queue = child.communicate(timeout=60)[0].strip()
    sender.broadcast("control", envelope(1))
    assert sender.depth(queue) == 1  # still registered within its visibility timeout
    time.sleep(1.2)
    sender.broadcast("control", envelope(2))
    assert sender.depth(queue) == 0


def test_a_silent_subscriber_is_registered_again_when_it_fetches(url: str, transports: list) -> None:
    subscriber, sender = SQLiteTransport(url, {"visibility_timeout": 1}), SQLiteTransport(url)
    transports += [subscriber, sender]
    queue = subscriber.subscribe("control")
    time.sleep(1.2)
    sender.broadcast("control", envelope(1))  # finds the registration expired
    assert subscriber.fetch([queue], 1, 0.1) == []
    sender.broadcast("control", envelope(2))
    assert [d.envelope.headers["n"] for d in drain(subscriber, [queue], 1)] == [2]


# -- several processes on one file --------------------------------------------------------


def test_processes_sharing_the_file_get_each_message_exactly_once(
    url: str, tmp_path: Path, transports: list
) -> None:
    total, stop = 2000, tmp_path / "stop"
    children = [spawn(CONSUMER, url, str(stop)) for _ in range(3)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        publisher = SQLiteTransport(url)
        transports.append(publisher)
        for start in range(0, total, 100):  # published while the consumers are draining
            publisher.publish_many(
                ("work", Envelope(b"{}", "application/json", headers={"n": n}))
                for n in range(start, start + 100)
            )
        deadline = time.monotonic() + 60
        while _rows(tmp_path / "kq.sqlite3") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.touch()
    seen = [json.loads(child.communicate(timeout=60)[0].splitlines()[-1]) for child in children]
    assert sorted(n for part in seen for n in part) == list(range(total))
    assert sum(1 for part in seen if part) >= 2  # the processes really did compete


def test_messages_of_a_killed_consumer_come_back_after_the_visibility_timeout(
    url: str, transports: list
) -> None:
    publisher = SQLiteTransport(url)
    transports.append(publisher)
    publisher.publish_many(("work", envelope(n)) for n in range(10))
    holder = spawn(HOLDER, url)
    try:
        assert holder.stdout is not None
        claimed = sorted(int(n) for n in holder.stdout.readline().split())
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=60)
    assert claimed == list(range(10))
    consumer = SQLiteTransport(url, {"visibility_timeout": 1})
    transports.append(consumer)
    got = drain(consumer, ["work"], 10, timeout=10)
    assert sorted(d.envelope.headers["n"] for d in got) == claimed
    assert all(d.redelivered for d in got)


def _rows(path: Path) -> int:
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        return conn.execute("SELECT count(*) FROM kq_messages WHERE queue = 'work'").fetchone()[0]


def test_loading_the_plugin_leaves_sqlite3_for_the_first_broker_backend_or_store() -> None:
    assert imported_on_load(
        "kq_sqlite", "kq_sqlite.transport", "kq_sqlite.backend", "kq_sqlite.beat_store", "kq_sqlite.db"
    ) == ["kq_sqlite"]
