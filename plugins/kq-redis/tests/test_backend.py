"""What is special to the Redis result backend: Celery's keys and announcements, results Celery
wrote, waiting by push from many threads, and failures."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable
from kq_redis.backend import RedisBackend

Make = Callable[[], RedisBackend]


@pytest.fixture
def make(redis_url: str, prefix: str) -> Iterator[Make]:
    made: list[RedisBackend] = []

    def build() -> RedisBackend:
        made.append(RedisBackend(redis_url, {"global_keyprefix": prefix}))
        return made[-1]

    yield build
    for backend in made:
        backend.close()


def celery_meta(task_id: str, state: str = "SUCCESS", result: object = 3) -> bytes:
    """A result meta the way Celery's Redis backend writes it (kombu's json, default spacing)."""
    return json.dumps(
        {
            "status": state,
            "result": result,
            "traceback": None,
            "children": [],
            "date_done": "2025-01-01T00:00:00+00:00",
            "task_id": task_id,
        }
    ).encode()


def test_results_live_at_celerys_key_with_native_expiry(make: Make, raw: redis.Redis, prefix: str) -> None:
    backend = make()
    task_id = uuid.uuid4().hex
    meta = b'{"status":"SUCCESS","result":3,"task_id":"' + task_id.encode() + b'"}'
    backend.store(StoredResult(task_id, "SUCCESS", meta), ttl=60)
    assert raw.get(f"{prefix}celery-task-meta-{task_id}") == meta
    assert 59_000 < raw.pttl(f"{prefix}celery-task-meta-{task_id}") <= 60_000
    assert raw.exists(f"{prefix}_kq.state.{task_id}") == 0  # the payload says its state


def test_a_payload_that_hides_its_state_gets_a_state_key(make: Make, raw: redis.Redis, prefix: str) -> None:
    backend = make()
    task_id = uuid.uuid4().hex
    backend.store(StoredResult(task_id, "STARTED", b"\x93\x01msgpack"), ttl=60)
    assert raw.get(f"{prefix}_kq.state.{task_id}") == b"STARTED"
    assert raw.pttl(f"{prefix}_kq.state.{task_id}") > 59_000
    assert backend.get(task_id) == StoredResult(task_id, "STARTED", b"\x93\x01msgpack")
    backend.store(StoredResult(task_id, "SUCCESS", celery_meta(task_id)), ttl=None)
    assert raw.exists(f"{prefix}_kq.state.{task_id}") == 0
    assert raw.pttl(f"{prefix}celery-task-meta-{task_id}") == -1  # no ttl: kept until forgotten
    assert backend.get(task_id).state == "SUCCESS"


def test_counters_are_integer_keys_of_their_own_with_native_expiry(
    make: Make, raw: redis.Redis, prefix: str
) -> None:
    backend = make()
    name = uuid.uuid4().hex
    assert backend.incr(name, 2, expires=60) == 2
    key = f"{prefix}_kq.counter:{name}"
    assert raw.get(key) == b"2"
    assert 59_000 < raw.pttl(key) <= 60_000
    assert backend.incr(name) == 3
    assert raw.pttl(key) == -1  # expires=None: kept until deleted
    backend.delete_counter(name)
    assert raw.exists(key) == 0


def test_every_store_is_announced_like_celerys(make: Make, raw: redis.Redis, prefix: str) -> None:
    task_id = uuid.uuid4().hex
    channel = f"{prefix}celery-task-meta-{task_id}"
    listener = raw.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel)
    try:
        listener.get_message(timeout=5)  # the confirmation
        make().store_many([StoredResult(task_id, "SUCCESS", celery_meta(task_id))], ttl=60)
        message = listener.get_message(timeout=5)
        assert message is not None and message["data"] == celery_meta(task_id)
    finally:
        listener.close()


def test_a_result_celery_wrote_is_read_and_waited_for(make: Make, raw: redis.Redis, prefix: str) -> None:
    backend = make()
    task_id = uuid.uuid4().hex
    key = f"{prefix}celery-task-meta-{task_id}"

    def celery_stores() -> None:  # Celery's Redis backend: SET EX, then PUBLISH the value
        raw.pipeline().set(key, celery_meta(task_id), ex=60).publish(key, celery_meta(task_id)).execute()

    timer = threading.Timer(0.3, celery_stores)
    timer.start()
    try:
        found = backend.wait(task_id, timeout=None)
    finally:
        timer.join()
    assert found == StoredResult(task_id, "SUCCESS", celery_meta(task_id))


def test_many_threads_wait_at_once_each_for_its_own_results(make: Make) -> None:
    waiter, writer = make(), make()
    rounds = [[uuid.uuid4().hex for _ in range(3)] for _ in range(8)]  # per thread, in turn
    found: dict[str, str | None] = {}

    def wait(ids: list[str]) -> None:
        for task_id in ids:  # each thread waits for its ids in turn, all threads at once
            result = waiter.wait(task_id, timeout=60)
            found[task_id] = result.state if result else None

    threads = [threading.Thread(target=wait, args=(ids,)) for ids in rounds]
    for thread in threads:
        thread.start()
    for turn in range(3):
        for ids in rounds:
            task_id = ids[turn]
            writer.store(StoredResult(task_id, "STARTED", celery_meta(task_id, "STARTED")), 60)
            writer.store(StoredResult(task_id, "FAILURE", celery_meta(task_id, "FAILURE")), 60)
    for thread in threads:
        thread.join(90)
    assert found == {task_id: "FAILURE" for ids in rounds for task_id in ids}


def test_unreachable_backend_raises_backend_unavailable_without_the_password() -> None:
    backend = RedisBackend("redis://:s3cret@127.0.0.1:1/0", {"socket_connect_timeout": 2})
    for call in (
        lambda: backend.get("x"),
        lambda: backend.wait("x", 1.0),
        lambda: backend.store(StoredResult("x", "SUCCESS", b"{}"), 60),
    ):
        with pytest.raises(BackendUnavailable) as caught:
            call()
        assert "s3cret" not in str(caught.value) and ":**@127.0.0.1:1" in str(caught.value)
    backend.close()


def test_a_waiter_outlives_its_pooled_connection(make: Make, raw: redis.Redis) -> None:
    """After a Redis restart the pool's idle connections are dead; the next wait reconnects."""
    backend = make()
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    backend.store(StoredResult(first, "SUCCESS", celery_meta(first)), 60)
    assert backend.wait(first, timeout=10) is not None  # the pool now holds a used connection
    _kill_connections(backend, raw)
    timer = threading.Timer(
        0.3, backend.store, args=(StoredResult(second, "SUCCESS", celery_meta(second)), 60)
    )
    timer.start()
    try:
        found = backend.wait(second, timeout=30)
    finally:
        timer.join()
    assert found is not None and found.state == "SUCCESS"


def test_a_counter_on_a_dead_connection_counts_once(make: Make, raw: redis.Redis) -> None:
    """A counter's INCRBY is never sent twice (a failed one may have counted), so a connection
    the server closed while idle must be found out before it goes; the count stays exact."""
    backend = make()
    key = uuid.uuid4().hex
    assert backend.incr(key, 1, 60) == 1
    _kill_connections(backend, raw)
    assert backend.incr(key, 1, 60) == 2
    assert backend.incr(key, 1, 60) == 3


def _kill_connections(backend: RedisBackend, raw: redis.Redis) -> None:
    """Close, from the server's side, every connection ``backend`` holds (as a restart does)."""
    pool = backend._pool
    held = [*pool._available_connections, *pool._in_use_connections]
    addresses = {"{}:{}".format(*c._sock.getsockname()[:2]) for c in held if c._sock is not None}
    victims = [c for c in raw.client_list() if c["addr"] in addresses]
    assert victims
    for victim in victims:
        raw.client_kill_filter(_id=victim["id"])


def test_waiting_without_timeout_outlasts_the_socket_timeout(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, {"global_keyprefix": prefix, "socket_timeout": 0.5})
    task_id = uuid.uuid4().hex
    timer = threading.Timer(
        1.5, backend.store, args=(StoredResult(task_id, "SUCCESS", celery_meta(task_id)), 60)
    )
    timer.start()
    try:
        found = backend.wait(task_id, timeout=None)
    finally:
        timer.join()
        backend.close()
    assert found is not None and found.state == "SUCCESS"
