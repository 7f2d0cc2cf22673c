"""The result backend contract, checked against the real store.

Subclass and give the backend's URL::

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend_url(self):
            return "mystore://127.0.0.1/0"
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kq.backend import BackendSpec, ResultBackend, StoredResult
from kq.plugins import get_plugins
from kq.states import FAILURE, PENDING, STARTED, SUCCESS


def result(state: str = SUCCESS, payload: bytes = b'{"status":"SUCCESS"}', task_id: str = "",
           ) -> StoredResult:
    return StoredResult(task_id=task_id or uuid.uuid4().hex, state=state, payload=payload)


class BackendContract:
    """Tests every result backend plugin must pass. Subclasses provide ``backend_url``."""

    @pytest.fixture
    def backend_url(self) -> str:
        raise NotImplementedError("a BackendContract subclass must provide backend_url")

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def backend_spec(self, backend_url: str) -> BackendSpec:
        return get_plugins().backend_for(backend_url)

    @pytest.fixture
    def make_backend(
        self, backend_url: str, backend_options: dict[str, Any], backend_spec: BackendSpec
    ) -> Iterator[Callable[[], ResultBackend]]:
        made: list[ResultBackend] = []

        def make() -> ResultBackend:
            backend = backend_spec.factory(backend_url, backend_options)
            made.append(backend)
            return backend

        yield make
        for backend in made:
            try:
                backend.close()
            except Exception:
                pass

    @pytest.fixture
    def backend(self, make_backend: Callable[[], ResultBackend]) -> ResultBackend:
        return make_backend()

    def test_spec_is_declared_with_schemes(self, backend_spec: BackendSpec) -> None:
        assert backend_spec.schemes

    def test_missing_result_is_none(self, backend: ResultBackend) -> None:
        assert backend.get(uuid.uuid4().hex) is None

    def test_store_then_get_returns_the_same_bytes(self, backend: ResultBackend) -> None:
        stored = result(payload=bytes(range(256)))
        backend.store(stored, ttl=60)
        assert backend.get(stored.task_id) == stored

    def test_a_later_store_replaces_the_earlier(self, backend: ResultBackend) -> None:
        first = result(STARTED, b"started")
        backend.store(first, ttl=60)
        second = result(SUCCESS, b"done", task_id=first.task_id)
        backend.store(second, ttl=60)
        assert backend.get(first.task_id) == second

    def test_store_many(self, backend: ResultBackend) -> None:
        many = [result(payload=str(n).encode()) for n in range(100)]
        backend.store_many(many, ttl=60)
        for item in many:
            assert backend.get(item.task_id) == item

    def test_forget(self, backend: ResultBackend) -> None:
        stored = result()
        backend.store(stored, ttl=60)
        backend.forget(stored.task_id)
        backend.forget(stored.task_id)  # forgetting twice is harmless
        assert backend.get(stored.task_id) is None

    def test_no_ttl_keeps_the_result(self, backend: ResultBackend) -> None:
        stored = result()
        backend.store(stored, ttl=None)
        assert backend.get(stored.task_id) == stored

    def test_expired_result_reads_as_missing(self, backend: ResultBackend) -> None:
        stored = result()
        backend.store(stored, ttl=1)
        assert backend.get(stored.task_id) == stored
        time.sleep(2.1)
        backend.cleanup()
        assert backend.get(stored.task_id) is None

    def test_visible_to_another_instance(self, backend_spec: BackendSpec,
                                         make_backend: Callable[[], ResultBackend]) -> None:
        writer, reader = make_backend(), make_backend()
        stored = result(FAILURE, b"boom")
        writer.store(stored, ttl=60)
        assert reader.get(stored.task_id) == stored

    def test_wait_returns_as_soon_as_a_ready_result_is_stored(
        self, make_backend: Callable[[], ResultBackend]
    ) -> None:
        waiter, writer = make_backend(), make_backend()
        task_id = uuid.uuid4().hex
        writer.store(result(PENDING, b"pending", task_id), ttl=60)
        timer = threading.Timer(0.3, writer.store, args=(result(SUCCESS, b"ok", task_id), 60))
        start = time.monotonic()
        timer.start()
        try:
            found = waiter.wait(task_id, timeout=10)
        finally:
            timer.join()
        assert found == result(SUCCESS, b"ok", task_id)
        assert time.monotonic() - start < 5

    def test_wait_times_out_with_the_latest_state(self, backend: ResultBackend) -> None:
        task_id = uuid.uuid4().hex
        backend.store(result(STARTED, b"started", task_id), ttl=60)
        start = time.monotonic()
        found = backend.wait(task_id, timeout=0.5)
        assert 0.4 <= time.monotonic() - start < 5
        assert found is not None and found.state == STARTED

    def test_wait_for_a_missing_result_times_out_with_none(self, backend: ResultBackend) -> None:
        assert backend.wait(uuid.uuid4().hex, timeout=0.3) is None

    def test_safe_from_many_threads(self, backend: ResultBackend) -> None:
        ids = [uuid.uuid4().hex for _ in range(200)]
        errors: list[BaseException] = []

        def write(chunk: list[str]) -> None:
            try:
                for task_id in chunk:
                    backend.store(result(SUCCESS, task_id.encode(), task_id), ttl=60)
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(ids[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        for task_id in ids:
            found = backend.get(task_id)
            assert found is not None and found.payload == task_id.encode()
