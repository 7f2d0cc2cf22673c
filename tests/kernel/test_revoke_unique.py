"""Revoke and unique tasks in one process: memory broker and backend, a worker in a thread."""

import threading
import time
import uuid

import pytest

from kq import App, hookimpl
from kq.exceptions import KQError, TaskRevoked
from kq.revoke import Revoke, of, signal_name
from kq.states import REVOKED, SUCCESS
from kq.testing.worker import worker_thread
from kq.unique import call_key


@pytest.fixture
def app() -> App:
    return App(
        "revoke",
        broker=f"memory://{uuid.uuid4().hex}",
        backend="memory://",
        task_default_queue=f"q-{uuid.uuid4().hex}",
    )


def test_call_key_is_canonical() -> None:
    assert call_key("t", (1, [2]), {"b": 1, "a": 2}) == call_key("t", [1, (2,)], {"a": 2, "b": 1})
    assert call_key("t", (1,), {}) != call_key("t", (2,), {})
    assert call_key("t", (1,), {}) != call_key("u", (1,), {})
    with pytest.raises(TypeError, match="JSON"):
        call_key("t", (object(),), {})


def test_revoke_messages_and_signals() -> None:
    revoke = of("abc", True, 9)
    assert revoke == Revoke(("abc",), True, "SIGKILL")
    assert Revoke.decode(revoke.encode()) == revoke
    assert of(["a", "b"], False, "term").signal == "SIGTERM"
    assert signal_name("SIGINT") == "SIGINT"
    with pytest.raises(ValueError, match="unknown signal"):
        signal_name("SIGNOPE")
    with pytest.raises(ValueError):
        Revoke.decode(b'{"ids": [1]}')


def test_unique_for_must_be_positive(app: App) -> None:
    with pytest.raises(ValueError, match="unique_for"):
        app.task(unique_for=0)(lambda: None)


def test_unique_tasks_need_a_backend_with_claims() -> None:
    app = App("no-claims", broker="memory://", backend=None)

    @app.task(unique_for=10)
    def job() -> None: ...

    with pytest.raises(KQError):
        job.delay()


def test_a_revoked_task_is_skipped_counted_and_announced(app: App) -> None:
    heard: list[tuple[str, str]] = []

    class Listener:
        @hookimpl
        def kq_task_revoked(self, request, reason):
            heard.append((request.id, reason))

    ran: list[int] = []

    @app.task
    def work(n: int) -> int:
        ran.append(n)
        return n

    name = f"revoke-listener-{uuid.uuid4().hex}"
    app.plugins.register(Listener(), name)
    try:
        victim = work.apply_async((1,), countdown=0.5)
        victim.revoke()
        assert victim.state == REVOKED
        with worker_thread(app, pool="threads", concurrency=1) as worker:
            assert work.delay(2).get(timeout=10) == 2
            deadline = time.monotonic() + 10
            while worker.stats.revoked < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            with pytest.raises(TaskRevoked):
                victim.get(timeout=1)
        assert ran == [2]
        assert heard == [(victim.id, "revoked")]
    finally:
        app.plugins.unregister(name)


def test_a_unique_call_is_sent_once_until_it_ends(app: App) -> None:
    release = threading.Event()

    @app.task(unique_for=30)
    def hold(key: str) -> str:
        release.wait(10)
        return key

    first = hold.delay("k")
    assert hold.delay("k").id == first.id
    assert hold.apply_async(("other",)).id != first.id
    with worker_thread(app, pool="threads", concurrency=2):
        release.set()
        assert first.get(timeout=10) == "k"
        deadline = time.monotonic() + 5
        while (again := hold.delay("k")).id == first.id:
            assert time.monotonic() < deadline, "the key was never released"
            time.sleep(0.02)
        assert again.get(timeout=10) == "k"
    assert again.state == SUCCESS
