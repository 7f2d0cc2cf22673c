"""What is special to kq-memcached: URLs, keys memcached accepts, expiry in whole seconds and
beyond 30 days, the 1 MB item limit, several servers, an outage, and chords and unique tasks
through a worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client

from kq import App, chord
from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.plugins import get_plugins
from kq.states import SUCCESS
from kq.testing.imports import imported_on_load
from kq.testing.servers import free_port
from kq.testing.worker import worker_thread
from kq_memcached.backend import (
    RELATIVE_EXPIRY_LIMIT,
    MemcachedBackend,
    ResultTooLarge,
    expiry,
    item_key,
    servers_of,
)

from .conftest import memcached_server


def url_of(*servers: tuple[str, int]) -> str:
    return "memcached://" + ",".join(f"{host}:{port}" for host, port in servers) + "/"


@pytest.fixture
def make(memcached: tuple[str, int]) -> Iterator[Callable[..., MemcachedBackend]]:
    """``make(url=None, **options)``: a backend (on the session's server unless ``url``), made
    as kq makes it, with a key prefix of the test's own."""
    made: list[Any] = []
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    def make_backend(url: str | None = None, **options: Any) -> MemcachedBackend:
        url = url or url_of(memcached)
        backend = get_plugins().backend_for(url).factory(url, {"key_prefix": prefix, **options})
        made.append(backend)
        return backend

    yield make_backend
    for backend in made:
        backend.close()


def raw(server: tuple[str, int]) -> Client:
    return Client(server, connect_timeout=5, timeout=5, default_noreply=False)


def test_pymemcache_is_imported_only_when_a_backend_is_made() -> None:
    assert imported_on_load("kq_memcached.backend", "pymemcache") == []


def test_url_forms() -> None:
    assert servers_of("memcached://127.0.0.1:11311/") == [("127.0.0.1", 11311)]
    assert servers_of("memcached://cache") == [("cache", 11211)]
    assert servers_of("cache+memcached://a:1;b:2/") == [("a", 1), ("b", 2)]
    assert servers_of("memcached://a:1,[::1]:2,[fe80::1],a:1/") == [("a", 1), ("::1", 2), ("fe80::1", 11211)]
    assert get_plugins().backend_for("cache+memcached://a/") == get_plugins().backend_for("memcached://a/")
    for bad, message in [
        ("memcached:///", "names no server"),
        ("memcached://a:1/0", "names only its servers"),
        ("memcached://a:99999/", "out of range"),
        ("memcached://a:b:c/", "is not host"),
        ("redis://a/", "not a memcached"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            servers_of(bad)


def test_options_are_checked(make: Callable[..., MemcachedBackend]) -> None:
    with pytest.raises(ConfigurationError, match="unknown memcached backend options tiemout"):
        make(tiemout=1)
    with pytest.raises(ConfigurationError, match="timeout must be a positive number"):
        make(timeout="soon")
    assert make(timeout="2.5").timeout == 2.5
    with pytest.raises(ConfigurationError, match="tls_ca_file needs tls: true"):
        make(tls_ca_file=__file__)
    with pytest.raises(ConfigurationError, match="tls must be true or false"):
        make(tls="maybe")


def test_keys_memcached_accepts_stay_distinct() -> None:
    keys = ["a b", "a%20b", "é", "%C3%A9", "x" * 250, "x" * 251, "tab\there", "~", "%7E", "nul\0"]
    items = [item_key(key) for key in keys]
    assert len(set(items)) == len(keys)
    assert all(
        len(item) <= 250 and item.isascii() and b" " not in item and b"\0" not in item for item in items
    )


@pytest.mark.parametrize("task_id", ["with space", "ünïcode", "x" * 400, "new\nline"])
def test_any_task_id_round_trips(make: Callable[..., MemcachedBackend], task_id: str) -> None:
    backend = make()
    stored = StoredResult(task_id, SUCCESS, task_id.encode())
    backend.store(stored, ttl=60)
    assert backend.get(task_id) == stored
    assert backend.get_many([task_id, "other"]) == [stored, None]


def test_expiry_in_whole_seconds_and_beyond_30_days() -> None:
    assert expiry(None) == 0
    assert [expiry(0.2), expiry(1), expiry(1.5), expiry(60)] == [2, 2, 3, 61]
    now = 1_800_000_000.0
    assert expiry(RELATIVE_EXPIRY_LIMIT - 1, now) == RELATIVE_EXPIRY_LIMIT  # still relative
    assert expiry(40 * 86400, now) == int(now) + 40 * 86400 + 1  # a Unix time


def test_a_result_kept_40_days_is_kept(
    make: Callable[..., MemcachedBackend], memcached: tuple[str, int]
) -> None:
    """Sent as 40 days relative, memcached would read it as a time in 1970 and drop it at once."""
    backend = make()
    stored = StoredResult(uuid.uuid4().hex, SUCCESS, b"long-lived")
    backend.store(stored, ttl=40 * 86400)
    assert backend.get(stored.task_id) == stored
    assert raw(memcached).get(item_key(backend.key(stored.task_id))) is not None


def test_memcached_drops_expired_items_itself(
    make: Callable[..., MemcachedBackend], memcached: tuple[str, int]
) -> None:
    backend = make()
    stored = StoredResult(uuid.uuid4().hex, SUCCESS, b"brief")
    backend.store(stored, ttl=0.5)
    item = item_key(backend.key(stored.task_id))
    assert raw(memcached).get(item) is not None
    time.sleep(0.6)
    assert backend.get(stored.task_id) is None  # the record's own expiry, to the millisecond
    deadline = time.monotonic() + 5
    while raw(memcached).get(item) is not None:  # and memcached's, within its second ticks
        assert time.monotonic() < deadline, "memcached kept an expired result"
        time.sleep(0.2)
    assert backend.cleanup() == 0


def test_a_value_memcached_cannot_keep_is_refused_clearly(make: Callable[..., MemcachedBackend]) -> None:
    backend = make()
    fits = StoredResult(uuid.uuid4().hex, SUCCESS, b"x" * 900_000)
    backend.store(fits, ttl=60)
    assert backend.get(fits.task_id) == fits
    with pytest.raises(ResultTooLarge, match=r"memcached keeps items up to its -I size"):
        backend.store(StoredResult(uuid.uuid4().hex, SUCCESS, b"x" * 1_100_000), ttl=60)
    # with max_value_size above the server's -I, the server's refusal is reported the same way
    with pytest.raises(ResultTooLarge):
        make(max_value_size=4 << 20).store(StoredResult(uuid.uuid4().hex, SUCCESS, b"x" * 2_000_000), ttl=60)


def test_a_value_it_did_not_write_reads_as_missing(
    make: Callable[..., MemcachedBackend], memcached: tuple[str, int]
) -> None:
    backend = make()
    task_id = uuid.uuid4().hex
    raw(memcached).set(item_key(backend.key(task_id)), b'{"status": "SUCCESS"}')
    assert backend.get(task_id) is None
    assert backend.get_many([task_id]) == [None]


def test_keys_spread_over_several_servers(
    make: Callable[..., MemcachedBackend], memcached: tuple[str, int], second_memcached: tuple[str, int]
) -> None:
    backend = make(url_of(memcached, second_memcached))
    stored = [StoredResult(uuid.uuid4().hex, SUCCESS, str(n).encode()) for n in range(200)]
    backend.store_many(stored, ttl=60)
    on = [
        [s for s in stored if raw(server).get(item_key(backend.key(s.task_id))) is not None]
        for server in (memcached, second_memcached)
    ]
    assert len(on[0]) + len(on[1]) == 200 and len(on[0]) > 50 and len(on[1]) > 50
    # the same servers named in another order (and Celery's spelling) find every result
    other = make(
        f"cache+memcached://{second_memcached[0]}:{second_memcached[1]};{memcached[0]}:{memcached[1]}/"
    )
    asked = [s.task_id for s in stored] + ["missing"]
    assert other.get_many(asked) == [*stored, None]
    assert [other.incr("chord"), backend.incr("chord")] == [1, 2]
    assert other.claim("unique", "a", 60) is None and backend.claim("unique", "b", 60) == "a"


def test_counters_go_far_below_zero(make: Callable[..., MemcachedBackend]) -> None:
    backend = make()
    assert backend.incr("c", -5) == -5
    assert backend.incr("c", -(2**40)) == -5 - 2**40
    assert backend.incr("c", 2**41) == 2**41 - 5 - 2**40


def test_an_outage_is_backend_unavailable_until_the_server_is_back(
    make: Callable[..., MemcachedBackend],
) -> None:
    port = free_port()
    with memcached_server(port):
        backend = make(url_of(("127.0.0.1", port)), connect_timeout=1, timeout=1)
        backend.store(StoredResult("before", SUCCESS, b"1"), ttl=60)
    for call in (
        lambda: backend.get("before"),
        lambda: backend.incr("c"),
        lambda: backend.store(StoredResult("during", SUCCESS, b"2"), ttl=60),
    ):
        with pytest.raises(BackendUnavailable, match=f"memcached at 127.0.0.1:{port}"):
            call()
    with memcached_server(port):  # a new, empty server: the backend reconnects by itself
        assert backend.get("before") is None
        backend.store(StoredResult("after", SUCCESS, b"3"), ttl=60)
        assert backend.get("after") == StoredResult("after", SUCCESS, b"3")


def test_tls_with_the_server_s_certificate_checked(
    make: Callable[..., MemcachedBackend], tls_memcached: tuple[tuple[str, int], str]
) -> None:
    server, ca_file = tls_memcached
    backend = make(url_of(server), tls=True, tls_ca_file=ca_file)
    stored = StoredResult(uuid.uuid4().hex, SUCCESS, b"over TLS")
    backend.store(stored, ttl=60)
    assert backend.get(stored.task_id) == stored and backend.get_many([stored.task_id]) == [stored]
    assert backend.incr("c") == 1 and backend.claim("k", "v", 60) is None
    untrusted = make(url_of(server), tls="true", connect_timeout=2, timeout=2)  # the system's CAs
    with pytest.raises(BackendUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.get(stored.task_id)
    plain = make(url_of(server), connect_timeout=2, timeout=2)
    with pytest.raises(BackendUnavailable):
        plain.get(stored.task_id)


@pytest.fixture
def kq_backend_url(memcached: tuple[str, int]) -> str:
    return url_of(memcached)


def test_a_chord_and_a_unique_task_through_a_worker(kq_app: App) -> None:
    """The chord counts its header with incr; the unique task holds its key with add."""
    name = uuid.uuid4().hex[:8]  # the session's memcached is shared by every test: names of our own

    @kq_app.task(name=f"mc.add.{name}")
    def add(x: int, y: int) -> int:
        return x + y

    @kq_app.task(name=f"mc.total.{name}")
    def total(values: list[int]) -> int:
        return sum(values)

    @kq_app.task(name=f"mc.slow.{name}", unique_for=60)
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
