"""What a running task knows about itself: ``self.request``, ``kq.current_task`` and
``kq.current_app`` (right per thread and per asyncio task), ``@kq.shared_task``, and the
per-task result options (``track_started``, ``store_errors_even_if_ignored``, ``update_state``).

The worker tests run an in-process worker on the memory broker and backend.
"""

import asyncio
import threading
import time
import uuid

import pytest

import kq
from kq import App, shared_task
from kq.states import FAILURE, PENDING, STARTED, SUCCESS
from kq.testing.worker import worker_thread


@pytest.fixture
def app():
    return App(
        "ctx", broker="memory://", backend="memory://", task_default_queue=f"ctx-{uuid.uuid4().hex[:8]}"
    )


def test_request_fields_in_a_bound_task(app):
    @app.task(bind=True)
    def inner(self):
        r = self.request
        return [r.id, r.parent_id, r.root_id]

    @app.task(bind=True)
    def outer(self, x, y=0):
        r = self.request
        return {
            "args": r.args,
            "kwargs": dict(r.kwargs),
            "retries": r.retries,
            "eta": r.eta,
            "delivery_info": r.delivery_info,
            "inner": inner.apply(task_id="in").get(),
        }

    seen = outer.apply((1,), {"y": 2}, task_id="out").get()
    assert seen["args"] == (1,) and seen["kwargs"] == {"y": 2}
    assert seen["retries"] == 0 and seen["eta"] is None
    assert seen["delivery_info"] == {"queue": None, "redelivered": False, "priority": None}
    assert seen["inner"] == ["in", "out", "out"]


def test_current_task_and_app_follow_the_running_task(app):
    other = App("other", broker="memory://", backend="memory://")

    @app.task
    def which():
        return kq.current_task.name, kq.current_app.main, kq.current_task.request.id

    assert not kq.current_task
    assert kq.current_app._get_current_object() is other  # the newest App outside tasks
    assert which.apply(task_id="w").get() == (which.name, "ctx", "w")
    assert kq.current_task._get_current_object() is None


def test_shared_task_binds_to_apps_created_before_and_after_it():
    first = App("first", broker="memory://", backend="memory://")

    @shared_task(bind=True, name="ctx.shared.add")
    def add(self, x, y):
        return (self.app.main, x + y)

    second = App("second", broker="memory://", backend="memory://")
    assert "ctx.shared.add" in first.tasks and "ctx.shared.add" in second.tasks
    assert first.tasks["ctx.shared.add"].app is first
    assert add.app is second  # the current app: the newest one
    assert add(1, 2) == ("second", 3)
    assert first.tasks["ctx.shared.add"].apply((2, 3)).get() == ("first", 5)


def test_shared_task_sends_through_the_current_app(app):
    @shared_task(name="ctx.shared.double")
    def double(x):
        return 2 * x

    with worker_thread(app, pool="threads", concurrency=1):
        assert double.delay(21).get(timeout=30) == 42


def test_current_task_is_right_in_each_thread_of_the_threads_pool(app):
    barrier = threading.Barrier(4, timeout=30)

    @app.task(bind=True)
    def mine(self, n):
        barrier.wait()  # all four run at once
        time.sleep(0.05)
        return (kq.current_task.request.id == self.request.id, self.request.args[0] == n)

    with worker_thread(app, pool="threads", concurrency=4):
        results = [mine.delay(n) for n in range(4)]
        assert [r.get(timeout=30) for r in results] == [[True, True]] * 4


def test_current_task_is_right_in_each_coroutine_of_the_asyncio_pool(app):
    @app.task(bind=True)
    async def mine(self, n):
        before = kq.current_task.request.id
        await asyncio.sleep(0.1)  # the other coroutines run meanwhile
        return (before == kq.current_task.request.id == self.request.id, kq.current_task.request.args[0] == n)

    with worker_thread(app, pool="asyncio", concurrency=8):
        results = [mine.delay(n) for n in range(8)]
        assert [r.get(timeout=30) for r in results] == [[True, True]] * 8


def test_track_started_shows_started_while_running(app):
    @app.task(track_started=True)
    def slow():
        time.sleep(1)
        return "ok"

    with worker_thread(app, pool="threads", concurrency=1):
        result = slow.delay()
        deadline = time.monotonic() + 30
        while result.state != STARTED:
            assert time.monotonic() < deadline and result.state == PENDING, result.state
            time.sleep(0.02)
        assert result.info["hostname"]
        assert result.get(timeout=30) == "ok"


def test_store_errors_even_if_ignored(app):
    @app.task(ignore_result=True, store_errors_even_if_ignored=True)
    def fails():
        raise KeyError("kept")

    @app.task(ignore_result=True, store_errors_even_if_ignored=True)
    def works():
        return 1

    @app.task(ignore_result=True)
    def fails_quietly():
        raise KeyError("dropped")

    with worker_thread(app, pool="threads", concurrency=1) as worker:
        failed, worked, quiet = fails.delay(), works.delay(), fails_quietly.delay()
        with pytest.raises(KeyError):
            failed.get(timeout=30)
        deadline = time.monotonic() + 30
        while worker.stats.succeeded + worker.stats.failed < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert failed.state == FAILURE
    assert worked.state == PENDING and quiet.state == PENDING


def test_update_state_is_read_live_through_info(app):
    step = threading.Event()
    go_on = threading.Event()

    @app.task(bind=True)
    def report(self):
        self.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
        step.set()
        go_on.wait(30)
        return "finished"

    with worker_thread(app, pool="threads", concurrency=1):
        result = report.delay()
        assert step.wait(30)
        assert result.state == "PROGRESS" and not result.ready()
        assert result.info == {"current": 1, "total": 2}
        go_on.set()
        assert result.get(timeout=30) == "finished"
        assert result.state == SUCCESS and result.info == "finished"


def test_update_state_needs_a_state_and_a_task(app):
    @app.task
    def idle():
        return None

    with pytest.raises(TypeError, match="needs a state"):
        idle.update_state(meta={})
    with pytest.raises(kq.KQError, match="needs a task_id"):
        idle.update_state(state="PROGRESS")


def test_follow_draws_current_or_done_over_total_as_a_bar():
    from kq.cli.follow import progress_of, render

    assert progress_of({"current": 3, "total": 12}) == (3, 12)
    assert progress_of({"done": 5, "total": 10}) == (5, 10)
    assert progress_of({"current": 1, "total": 0}) is None
    assert progress_of({"current": True, "total": 2}) is None
    assert progress_of("halfway") is None
    assert render("PROGRESS", {"current": 15, "total": 30}) == (
        "PROGRESS [" + "#" * 15 + "-" * 15 + "]  50% 15/30"
    )
    assert render("STARTED", {"pid": 7}) == "STARTED: {'pid': 7}"
    assert render("RECEIVED", None) == "RECEIVED"
