"""The result backend contract, checked against the real store.

Subclass and give the backend's URL::

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend_url(self):
            return "mystore://127.0.0.1/0"

The counter tests run when the spec declares ``counters``, the claim tests when it declares
``claims``, and those across processes only when it is also ``shared``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from kq.backend import BackendCapabilities, BackendSpec, ResultBackend, StoredResult
from kq.plugins import get_plugins
from kq.states import FAILURE, PENDING, STARTED, SUCCESS

from .children import run_in_children


def result(
    state: str = SUCCESS,
    payload: bytes = b'{"status":"SUCCESS"}',
    task_id: str = "",
) -> StoredResult:
    return StoredResult(task_id=task_id or uuid.uuid4().hex, state=state, payload=payload)


def counting(capabilities: BackendCapabilities) -> None:
    """Skip the calling test unless the backend declares ``counters``."""
    if not capabilities.counters:
        pytest.skip("backend does not declare counters")


def _increment_in_child(
    factory: Callable[[str, Mapping[str, Any]], ResultBackend],
    url: str,
    options: dict[str, Any],
    key: str,
    times: int,
    ready: Any,
    out: Any,
) -> None:
    """A child process of :meth:`BackendContract.test_incr_is_atomic_across_processes`: open a
    backend of its own, wait until every child has, then increment and report the values."""
    try:
        backend = factory(url, options)
        try:
            ready.wait(120)
            out.put([backend.incr(key) for _ in range(times)])
        finally:
            backend.close()
    except BaseException as exc:  # reported to the test, which fails with it
        ready.abort()
        out.put(f"{type(exc).__name__}: {exc}")


def claiming(capabilities: BackendCapabilities) -> None:
    """Skip the calling test unless the backend declares ``claims``."""
    if not capabilities.claims:
        pytest.skip("backend does not declare claims")


def _claim_in_child(
    factory: Callable[[str, Mapping[str, Any]], ResultBackend],
    url: str,
    options: dict[str, Any],
    key: str,
    value: str,
    ready: Any,
    out: Any,
) -> None:
    """A child process of :meth:`BackendContract.test_claim_is_atomic_across_processes`."""
    try:
        backend = factory(url, options)
        try:
            ready.wait(120)
            out.put((value, backend.claim(key, value, 60)))
        finally:
            backend.close()
    except BaseException as exc:  # reported to the test, which fails with it
        ready.abort()
        out.put(f"{type(exc).__name__}: {exc}")


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

    def test_backend_agrees_with_its_spec(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        # A lazy factory cannot lend the spec its class's capabilities: both must name the same.
        assert backend.capabilities == backend_spec.capabilities, "the class and the spec disagree"

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
        assert backend.get_many([stored.task_id]) == [None]

    def test_visible_to_another_instance(
        self, backend_spec: BackendSpec, make_backend: Callable[[], ResultBackend]
    ) -> None:
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

    # -- get_many ---------------------------------------------------------------------------

    def test_get_many_keeps_the_order_and_gives_none_for_missing(self, backend: ResultBackend) -> None:
        stored = [result(SUCCESS, str(n).encode()) for n in range(5)]
        backend.store_many(stored, ttl=60)
        missing = uuid.uuid4().hex
        asked = [stored[3].task_id, missing, stored[0].task_id, stored[4].task_id, stored[3].task_id]
        assert backend.get_many(asked) == [stored[3], None, stored[0], stored[4], stored[3]]
        assert backend.get_many([]) == []

    def test_get_many_of_1500_ids(self, backend: ResultBackend) -> None:
        stored = [result(SUCCESS, str(n).encode()) for n in range(1500)]
        backend.store_many(stored, ttl=60)
        asked = [item.task_id for item in reversed(stored)]
        asked[::7] = [uuid.uuid4().hex for _ in asked[::7]]
        expected = [None if i % 7 == 0 else item for i, item in enumerate(reversed(stored))]
        assert backend.get_many(asked) == expected

    # -- counters ---------------------------------------------------------------------------

    def test_without_counters_incr_says_so(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        if backend_spec.capabilities.counters:
            pytest.skip("backend declares counters")
        for call in (lambda: backend.incr("chord"), lambda: backend.delete_counter("chord")):
            with pytest.raises(NotImplementedError, match=type(backend).__name__):
                call()

    def test_incr_starts_at_the_amount_and_returns_running_values(
        self, backend_spec: BackendSpec, backend: ResultBackend
    ) -> None:
        counting(backend_spec.capabilities)
        key = uuid.uuid4().hex
        assert [backend.incr(key) for _ in range(3)] == [1, 2, 3]
        other = uuid.uuid4().hex
        assert backend.incr(other, 5) == 5

    def test_incr_by_other_amounts(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        counting(backend_spec.capabilities)
        key = uuid.uuid4().hex
        assert backend.incr(key, -2) == -2
        assert backend.incr(key, 10) == 8
        assert backend.incr(key, 0) == 8
        assert backend.incr(key, -8) == 0
        assert backend.incr(key, 2**40) == 2**40

    def test_counters_are_apart_from_each_other_and_from_results(
        self, backend_spec: BackendSpec, backend: ResultBackend
    ) -> None:
        counting(backend_spec.capabilities)
        key, other = uuid.uuid4().hex, uuid.uuid4().hex
        stored = result(SUCCESS, b"a result named like the counter", task_id=key)
        backend.store(stored, ttl=60)
        assert backend.incr(key, 3) == 3
        assert backend.incr(other) == 1
        assert backend.get(key) == stored
        backend.forget(key)
        assert backend.incr(key) == 4
        backend.store(stored, ttl=60)
        backend.delete_counter(key)
        assert backend.get(key) == stored
        assert backend.incr(other) == 2

    def test_counter_names_are_compared_exactly(
        self, backend_spec: BackendSpec, backend: ResultBackend
    ) -> None:
        counting(backend_spec.capabilities)
        base = uuid.uuid4().hex
        names = [f"chord:{base}", f"Chord:{base}", f"chord:{base} ", f"chord:{base}:ünï"]
        assert [backend.incr(name, n) for n, name in enumerate(names, 1)] == [1, 2, 3, 4]
        assert [backend.incr(name) for name in names] == [2, 3, 4, 5]

    def test_delete_counter_restarts_it(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        counting(backend_spec.capabilities)
        key = uuid.uuid4().hex
        backend.incr(key, 5)
        backend.delete_counter(key)
        backend.delete_counter(key)  # deleting twice is harmless
        assert backend.incr(key) == 1
        backend.delete_counter(uuid.uuid4().hex)  # and so is deleting one that never was

    def test_a_counter_is_shared_by_instances(
        self, backend_spec: BackendSpec, make_backend: Callable[[], ResultBackend]
    ) -> None:
        counting(backend_spec.capabilities)
        first, second = make_backend(), make_backend()
        key = uuid.uuid4().hex
        assert first.incr(key) == 1
        assert second.incr(key) == 2
        assert first.incr(key) == 3

    def test_incr_is_atomic_across_threads(
        self, backend_spec: BackendSpec, make_backend: Callable[[], ResultBackend]
    ) -> None:
        """8 threads, each with its own backend, 200 increments each: every value from 1 to 1600
        comes back exactly once."""
        counting(backend_spec.capabilities)
        key = uuid.uuid4().hex
        backends = [make_backend() for _ in range(8)]
        start = threading.Barrier(len(backends))
        values: list[list[int]] = [[] for _ in backends]
        errors: list[BaseException] = []

        def count(backend: ResultBackend, into: list[int]) -> None:
            try:
                start.wait(60)
                into.extend(backend.incr(key) for _ in range(200))
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=count, args=pair) for pair in zip(backends, values, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert sorted(v for chunk in values for v in chunk) == list(range(1, 1601))
        assert all(chunk == sorted(chunk) for chunk in values)  # each caller sees them rise

    def test_incr_is_atomic_across_processes(
        self, backend_spec: BackendSpec, backend_url: str, backend_options: dict[str, Any]
    ) -> None:
        """4 processes (spawned, so nothing is inherited), each opening the backend from its URL,
        200 increments each: every value from 1 to 800 comes back exactly once."""
        counting(backend_spec.capabilities)
        if not backend_spec.capabilities.shared:
            pytest.skip("backend is not shared between processes")
        key = uuid.uuid4().hex
        reports = run_in_children(
            _increment_in_child,
            [(backend_spec.factory, backend_url, backend_options, key, 200) for _ in range(4)],
        )
        assert sorted(v for chunk in reports for v in chunk) == list(range(1, 801))

    def test_counter_expiry(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        """A counter may vanish ``expires`` seconds after its last increment; ``expires=None``
        keeps it. An expired counter counts from 0 again, before and after ``cleanup()``."""
        counting(backend_spec.capabilities)
        read_late, cleaned, kept, renewed = (uuid.uuid4().hex for _ in range(4))
        for key in (read_late, cleaned, kept):
            assert backend.incr(key, 5, expires=1) == 5
        assert backend.incr(kept) == 6
        assert backend.incr(renewed, expires=2) == 1
        time.sleep(1.2)
        assert backend.incr(renewed, expires=2) == 2
        time.sleep(1.2)
        assert backend.incr(read_late, expires=1) == 1
        backend.cleanup()
        assert backend.incr(cleaned) == 1
        assert backend.incr(kept) == 7
        assert backend.incr(renewed) == 3

    # -- claims -----------------------------------------------------------------------------

    def test_without_claims_claim_says_so(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        if backend_spec.capabilities.claims:
            pytest.skip("backend declares claims")
        calls: tuple[Callable[[], object], ...] = (
            lambda: backend.claim("k", "v", 1),
            lambda: backend.release("k", "v"),
        )
        for call in calls:
            with pytest.raises(NotImplementedError, match="claims"):
                call()

    def test_claim_returns_the_holder(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        claiming(backend_spec.capabilities)
        key = uuid.uuid4().hex
        assert backend.claim(key, "first", 60) is None
        assert backend.claim(key, "second", 60) == "first"
        assert backend.claim(key, "first", 60) == "first"

    def test_claims_are_apart_from_results_and_counters(
        self, backend_spec: BackendSpec, backend: ResultBackend
    ) -> None:
        claiming(backend_spec.capabilities)
        key = uuid.uuid4().hex
        backend.store(result(SUCCESS, b"a result named like the claim", task_id=key), None)
        assert backend.claim(key, "holder", 60) is None
        stored = backend.get(key)
        assert stored is not None and stored.payload == b"a result named like the claim"
        if backend_spec.capabilities.counters:
            assert backend.incr(key) == 1
            assert backend.claim(key, "other", 60) == "holder"

    def test_release_frees_only_for_its_holder(
        self, backend_spec: BackendSpec, backend: ResultBackend
    ) -> None:
        claiming(backend_spec.capabilities)
        key = uuid.uuid4().hex
        assert backend.claim(key, "first", 60) is None
        backend.release(key, "someone else")
        assert backend.claim(key, "second", 60) == "first"
        backend.release(key, "first")
        backend.release(key, "first")  # releasing twice is harmless
        assert backend.claim(key, "second", 60) is None
        backend.release(uuid.uuid4().hex, "never claimed")  # and so is releasing nothing

    def test_claim_lapses_after_expires(self, backend_spec: BackendSpec, backend: ResultBackend) -> None:
        """A lapsed claim is free again, before and after ``cleanup()``; releasing a claim that
        lapsed and was taken by another value leaves the new holder in place."""
        claiming(backend_spec.capabilities)
        taken_over, cleaned = uuid.uuid4().hex, uuid.uuid4().hex
        for key in (taken_over, cleaned):
            assert backend.claim(key, "old", 1) is None
        time.sleep(1.2)
        assert backend.claim(taken_over, "new", 60) is None
        backend.release(taken_over, "old")
        assert backend.claim(taken_over, "third", 60) == "new"
        backend.cleanup()
        assert backend.claim(cleaned, "new", 60) is None

    def test_claim_is_shared_by_instances(
        self, backend_spec: BackendSpec, make_backend: Callable[[], ResultBackend]
    ) -> None:
        claiming(backend_spec.capabilities)
        first, second = make_backend(), make_backend()
        key = uuid.uuid4().hex
        assert first.claim(key, "one", 60) is None
        assert second.claim(key, "two", 60) == "one"

    def test_claim_is_atomic_across_threads(
        self, backend_spec: BackendSpec, make_backend: Callable[[], ResultBackend]
    ) -> None:
        """16 threads, each with its own backend, claim one key at once, 20 rounds: each round
        exactly one wins and every other is told the winner."""
        claiming(backend_spec.capabilities)
        backends = [make_backend() for _ in range(16)]
        for _ in range(20):
            key = uuid.uuid4().hex
            start = threading.Barrier(len(backends))
            answers: dict[str, str | None] = {}
            errors: list[BaseException] = []

            def claim(
                backend: ResultBackend,
                value: str,
                key: str = key,
                start: threading.Barrier = start,
                answers: dict[str, str | None] = answers,
                errors: list[BaseException] = errors,
            ) -> None:
                try:
                    start.wait(60)
                    answers[value] = backend.claim(key, value, 60)
                except BaseException as exc:  # surfaced by the assertion below
                    errors.append(exc)

            threads = [threading.Thread(target=claim, args=(b, f"v{i}")) for i, b in enumerate(backends)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert errors == []
            winners = [value for value, holder in answers.items() if holder is None]
            assert len(winners) == 1
            assert {holder for holder in answers.values() if holder is not None} == set(winners)

    def test_claim_is_atomic_across_processes(
        self, backend_spec: BackendSpec, backend_url: str, backend_options: dict[str, Any]
    ) -> None:
        """4 spawned processes claim one key at once: one wins, the others name it."""
        claiming(backend_spec.capabilities)
        if not backend_spec.capabilities.shared:
            pytest.skip("backend is not shared between processes")
        key = uuid.uuid4().hex
        reports = run_in_children(
            _claim_in_child,
            [(backend_spec.factory, backend_url, backend_options, key, f"p{i}") for i in range(4)],
        )
        winners = [value for value, holder in reports if holder is None]
        assert len(winners) == 1
        assert {holder for _, holder in reports if holder is not None} <= set(winners)
