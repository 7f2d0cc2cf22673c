"""The schedule store contract: beat's leader lock and its fenced, compare-and-set state, checked
against the real store.

Subclass and give the store's URL (and options, if the tests need some)::

    class TestMyScheduleStore(ScheduleStoreContract):
        @pytest.fixture
        def schedule_store_url(self):
            return "mystore://127.0.0.1/0"

Every store is opened as beat opens it: through the plugin registry, with a ``namespace`` of
its own per test. Leases are short (half a second) and the tests wait them out for real.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kq.beat import ScheduleStore
from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins, url_scheme
from kq.specs import ScheduleStoreSpec

from .children import run_in_children

#: A lease the tests wait out, and how long they wait for it to be over.
LEASE = 0.5
EXPIRED = LEASE + 0.3
T0 = datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=timezone.utc)


def _call_in_child(
    factory: Callable[[str, Mapping[str, Any]], ScheduleStore],
    url: str,
    options: dict[str, Any],
    method: str,
    args: Sequence[Any],
    ready: Any,
    out: Any,
) -> None:
    """A child process of the races below: open a store of its own, wait until every child
    has, then call ``method(*args)`` once and report ``(args, answer)``."""
    try:
        store = factory(url, options)
        try:
            ready.wait(120)
            out.put((tuple(args), getattr(store, method)(*args)))
        finally:
            store.close()
    except BaseException as exc:  # reported to the test, which fails with it
        ready.abort()
        out.put(f"{type(exc).__name__}: {exc}")


class ScheduleStoreContract:
    """Tests every schedule store plugin must pass. Subclasses provide ``schedule_store_url``."""

    @pytest.fixture
    def schedule_store_url(self) -> str:
        raise NotImplementedError("a ScheduleStoreContract subclass must provide schedule_store_url")

    @pytest.fixture
    def schedule_store_options(self) -> dict[str, Any]:
        """What a user would put in ``beat_store_options``; ``namespace`` is added per store."""
        return {}

    @pytest.fixture
    def schedule_store_spec(self, schedule_store_url: str) -> ScheduleStoreSpec:
        return get_plugins().schedule_stores.get(url_scheme(schedule_store_url))

    @pytest.fixture
    def schedule_store_namespace(self) -> str:
        return f"kqtest-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def store_options(
        self, schedule_store_options: dict[str, Any], schedule_store_namespace: str
    ) -> dict[str, Any]:
        """The options beat passes to the factory: the user's plus the app's namespace."""
        return {**schedule_store_options, "namespace": schedule_store_namespace}

    @pytest.fixture
    def make_store(
        self,
        schedule_store_url: str,
        store_options: dict[str, Any],
        schedule_store_spec: ScheduleStoreSpec,
    ) -> Iterator[Callable[..., ScheduleStore]]:
        """``make_store()`` opens another store on the test's namespace, ``make_store(ns)`` one
        on namespace ``ns``; all are closed after the test."""
        made: list[ScheduleStore] = []

        def make(namespace: str | None = None) -> ScheduleStore:
            options = dict(store_options)
            if namespace is not None:
                options["namespace"] = namespace
            store = schedule_store_spec.factory(schedule_store_url, options)
            made.append(store)
            return store

        yield make
        for store in made:
            try:
                store.close()
            except Exception:
                pass

    @pytest.fixture
    def store(self, make_store: Callable[..., ScheduleStore]) -> ScheduleStore:
        return make_store()

    def test_spec_is_declared_with_schemes(self, schedule_store_spec: ScheduleStoreSpec) -> None:
        assert schedule_store_spec.schemes

    def test_a_new_store_has_no_leader_and_no_runs(self, store: ScheduleStore) -> None:
        assert store.leader() is None
        assert dict(store.last_runs()) == {}

    # -- the lock ---------------------------------------------------------------------------

    def test_acquire_excludes_others_until_the_lease_expires(
        self, make_store: Callable[..., ScheduleStore]
    ) -> None:
        first, second, watcher = make_store(), make_store(), make_store()
        assert first.acquire("a", LEASE) is True
        assert second.acquire("b", LEASE) is False
        assert watcher.leader() == "a"
        time.sleep(EXPIRED)
        assert watcher.leader() is None
        assert second.acquire("b", LEASE) is True
        assert first.acquire("a", LEASE) is False
        assert watcher.leader() == "b"

    def test_renewal_by_the_holder_extends_the_lease(self, make_store: Callable[..., ScheduleStore]) -> None:
        """The lease counts from the last acquire: renewed halfway, it outlives the first one."""
        holder, other = make_store(), make_store()
        assert holder.acquire("a", 2 * LEASE) is True
        time.sleep(LEASE)
        assert holder.acquire("a", 2 * LEASE) is True
        time.sleep(LEASE + 0.2)  # past the first lease's end, within the renewed one
        assert other.acquire("b", 2 * LEASE) is False
        assert other.leader() == "a"
        time.sleep(LEASE)
        assert other.acquire("b", 2 * LEASE) is True

    def test_release_hands_over_at_once(self, make_store: Callable[..., ScheduleStore]) -> None:
        first, second = make_store(), make_store()
        assert first.acquire("a", 60) is True
        second.release("b")  # not the holder: nothing happens
        assert second.leader() == "a"
        assert second.acquire("b", 60) is False
        first.release("a")
        assert second.leader() is None
        assert second.acquire("b", 60) is True
        first.release("a")  # releasing when another holds it leaves the other in place
        assert first.leader() == "b"
        second.release("b")
        second.release("b")  # releasing twice is harmless
        assert first.leader() is None

    # -- the state --------------------------------------------------------------------------

    def test_advance_from_no_record(self, store: ScheduleStore) -> None:
        assert store.acquire("a", 60)
        assert store.advance("a", "report", None, T0) is True
        assert dict(store.last_runs()) == {"report": T0}
        later = T0 + timedelta(minutes=5)
        assert store.advance("a", "report", None, later) is False  # there is a record now
        assert dict(store.last_runs()) == {"report": T0}

    def test_advance_compares_the_expected_slot(self, store: ScheduleStore) -> None:
        assert store.acquire("a", 60)
        later, latest = T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)
        assert store.advance("a", "report", None, T0)
        assert store.advance("a", "report", later, latest) is False
        assert store.advance("a", "report", T0 - timedelta(microseconds=1), latest) is False
        assert dict(store.last_runs()) == {"report": T0}
        assert store.advance("a", "report", T0, later) is True
        assert store.advance("a", "report", later, T0) is True  # beat puts a slot back this way
        assert dict(store.last_runs()) == {"report": T0}
        assert store.advance("a", "never recorded", T0, later) is False
        assert dict(store.last_runs()) == {"report": T0}

    def test_advance_needs_the_lock(self, make_store: Callable[..., ScheduleStore]) -> None:
        leader, other = make_store(), make_store()
        assert other.advance("b", "report", None, T0) is False  # nobody holds the lock
        assert leader.acquire("a", 60)
        assert leader.advance("a", "report", None, T0)
        later = T0 + timedelta(minutes=5)
        assert other.advance("b", "report", T0, later) is False
        assert other.advance("b", "new", None, later) is False
        leader.release("a")
        assert leader.advance("a", "report", T0, later) is False  # released: no longer leads
        assert dict(other.last_runs()) == {"report": T0}

    def test_advance_is_fenced_by_the_lease(self, make_store: Callable[..., ScheduleStore]) -> None:
        """A leader paused past its lease cannot write, whether or not another took over."""
        paused, successor = make_store(), make_store()
        assert paused.acquire("a", LEASE)
        assert paused.advance("a", "report", None, T0)
        time.sleep(EXPIRED)
        later = T0 + timedelta(minutes=5)
        assert paused.advance("a", "report", T0, later) is False
        assert successor.acquire("b", 60)
        assert paused.advance("a", "report", T0, later) is False
        assert successor.advance("b", "report", T0, later) is True
        assert dict(paused.last_runs()) == {"report": later}

    def test_datetimes_round_trip_exactly(self, make_store: Callable[..., ScheduleStore]) -> None:
        writer, reader = make_store(), make_store()
        slots = {
            "microseconds": T0,
            "one microsecond": datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc),
            "whole seconds": datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
            "far ahead": datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc),
            "ünï:cöde/with 'quotes' \"and\" %_* ": datetime(2030, 6, 15, 12, tzinfo=timezone.utc),
        }
        assert writer.acquire("a", 60)
        for name, slot in slots.items():
            assert writer.advance("a", name, None, slot)
        found = dict(reader.last_runs())
        assert found == slots
        for name, slot in found.items():
            assert slot.utcoffset() == timedelta(0)
            assert slot.isoformat() == slots[name].isoformat()

    def test_entries_are_apart_and_seen_by_other_instances(
        self, make_store: Callable[..., ScheduleStore]
    ) -> None:
        writer, reader = make_store(), make_store()
        assert writer.acquire("a", 60)
        later = T0 + timedelta(hours=1)
        assert writer.advance("a", "report", None, T0)
        assert writer.advance("a", "Report", None, later)
        assert writer.advance("a", "report", T0, later)
        assert dict(reader.last_runs()) == {"report": later, "Report": later}
        assert reader.acquire("a", 60)  # the same holder may renew from another instance
        assert reader.advance("a", "Report", later, T0)
        assert dict(writer.last_runs()) == {"report": later, "Report": T0}

    def test_namespaces_are_apart(
        self, make_store: Callable[..., ScheduleStore], schedule_store_namespace: str
    ) -> None:
        mine, theirs = make_store(), make_store(f"{schedule_store_namespace}-other")
        assert mine.acquire("a", 60)
        assert theirs.leader() is None
        assert theirs.acquire("b", 60)
        assert (mine.leader(), theirs.leader()) == ("a", "b")
        assert mine.advance("a", "report", None, T0)
        assert dict(theirs.last_runs()) == {}
        assert theirs.advance("a", "report", None, T0) is False  # a leads the other namespace
        assert theirs.advance("b", "report", None, T0 + timedelta(days=1))
        assert dict(mine.last_runs()) == {"report": T0}
        mine.release("a")
        assert theirs.leader() == "b"

    def test_unknown_options_are_rejected(
        self,
        schedule_store_spec: ScheduleStoreSpec,
        schedule_store_url: str,
        store_options: dict[str, Any],
    ) -> None:
        with pytest.raises(ConfigurationError, match="no_such_option"):
            schedule_store_spec.factory(schedule_store_url, {**store_options, "no_such_option": 1})

    # -- across processes -------------------------------------------------------------------

    def test_acquire_is_atomic_across_processes(
        self,
        schedule_store_spec: ScheduleStoreSpec,
        schedule_store_url: str,
        store_options: dict[str, Any],
        store: ScheduleStore,
    ) -> None:
        """4 spawned processes, each opening the store from its URL, acquire at once: exactly
        one holds the lock, and it is the one the store names."""
        reports = run_in_children(
            _call_in_child,
            [
                (schedule_store_spec.factory, schedule_store_url, store_options, "acquire", (f"p{i}", 60))
                for i in range(4)
            ],
        )
        winners = [holder for (holder, _), took in reports if took]
        assert len(winners) == 1
        assert store.leader() == winners[0]

    def test_advance_is_atomic_across_processes(
        self,
        schedule_store_spec: ScheduleStoreSpec,
        schedule_store_url: str,
        store_options: dict[str, Any],
        store: ScheduleStore,
    ) -> None:
        """4 spawned processes, as the one leader, advance the same entry from the same expected
        slot to slots of their own: exactly one write lands, first from no record, then from
        the recorded slot."""
        assert store.acquire("leader", 60)
        expected = None
        for first in (1, 11):
            slots = [T0 + timedelta(seconds=n, microseconds=n) for n in range(first, first + 4)]
            reports = run_in_children(
                _call_in_child,
                [
                    (
                        schedule_store_spec.factory,
                        schedule_store_url,
                        store_options,
                        "advance",
                        ("leader", "report", expected, slot),
                    )
                    for slot in slots
                ],
            )
            landed = [args[3] for args, done in reports if done]
            assert len(landed) == 1
            assert dict(store.last_runs()) == {"report": landed[0]}
            expected = landed[0]
