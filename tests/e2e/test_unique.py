"""Unique tasks on real backends (Redis and SQLite) with a real `kq worker` process: many
concurrent publishes of one call run it once and all get the first task's handle."""

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kq import App

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "redis"])
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """SQLite broker and backend (the test's file), or Redis for both under the test's prefix."""
    if request.param == "sqlite":
        return {}
    settings = request.getfixturevalue("redis_broker")
    prefix = settings["broker_transport_options"]["global_keyprefix"]
    return {
        **settings,
        "result_backend": settings["broker_url"],
        "result_backend_options": {"global_keyprefix": prefix},
    }


@pytest.fixture
def work(client: App) -> Iterator[Any]:
    """The worker app's unique task, registered in the client under the same name."""

    @client.task(name="unique.work", unique_for=60)
    def work(n: int, seconds: float = 0.5) -> int:
        raise AssertionError("runs in the worker only")

    yield work


def publish_at_once(send: Callable[[], Any], times: int) -> list[Any]:
    start, handles, errors = threading.Barrier(times), [], []

    def one() -> None:
        try:
            start.wait(30)
            handles.append(send())
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    return handles


def released(send: Callable[[], Any], holder: str) -> Any:
    """Send until the handle is a new task's (the worker releases the key just after it stores
    the result a client may already have read)."""
    deadline = time.monotonic() + 10
    while (handle := send()).id == holder:
        assert time.monotonic() < deadline, "the unique key was never released"
        time.sleep(0.05)
    return handle


def test_100_concurrent_publishes_run_once(client: App, work: Any, start_worker: Callable, ran) -> None:
    start_worker("-c", "4", app="unique_app:app")
    handles = publish_at_once(lambda: work.delay(7), 100)
    assert len({h.id for h in handles}) == 1
    assert handles[0].get(timeout=60) == 7
    assert ran("ran") == [handles[0].id]
    # The key is released right after the result is stored: the same call then runs again.
    again = released(lambda: work.delay(7), handles[0].id)
    assert again.get(timeout=60) == 7
    assert sorted(ran("ran")) == sorted([handles[0].id, again.id])


def test_unique_key_covers_different_arguments(client: App, work: Any, start_worker: Callable, ran) -> None:
    start_worker("-c", "4", app="unique_app:app")
    handles = publish_at_once(
        lambda: work.apply_async((threading.get_ident(),), unique_key="nightly-report"), 20
    )
    assert len({h.id for h in handles}) == 1
    handles[0].get(timeout=60)
    other = work.apply_async((1,), {"seconds": 0.0})  # a call of its own key
    assert other.id != handles[0].id
    assert other.get(timeout=60) == 1
    assert sorted(ran("ran")) == sorted([handles[0].id, other.id])
