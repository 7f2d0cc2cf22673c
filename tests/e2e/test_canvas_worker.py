"""The canvas's edge cases on a real worker (in a thread of the test process) and a real SQLite
broker and backend: messages from Celery clients, malformed or unsendable steps, errbacks that
must run once, expired header tasks, and the fallback for result backends without counters."""

import logging
import threading
import time
import types

import pytest

from kq import App, GroupResult, chain, chord, group, hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.exceptions import KQError, TaskRevoked
from kq.plugins import get_plugins, reload_plugins
from kq.testing.worker import worker_thread
from kq_sqlite.backend import SQLiteBackend

pytestmark = pytest.mark.timeout(60)


def register_tasks(app: App) -> dict[str, list]:
    """The tasks of these tests; returns what they record, by kind."""
    seen: dict[str, list] = {"errback": [], "body": []}
    lock = threading.Lock()

    def note(kind, value):
        with lock:
            seen[kind].append(value)

    @app.task(name="w.add")
    def add(x, y):
        return x + y

    @app.task(name="w.tsum")
    def tsum(values):
        return sum(values)

    @app.task(name="w.body")
    def body(values):
        note("body", values)
        return values

    @app.task(name="w.fail")
    def fail(message):
        raise ValueError(message)

    @app.task(name="w.errback")
    def errback(task_id):
        note("errback", task_id)

    @app.task(name="w.sleep")
    def sleep(value, seconds):
        time.sleep(seconds)
        return value

    @app.task(name="w.quiet", ignore_result=True)
    def quiet(x):
        return x

    return seen


@pytest.fixture
def seen(kq_app):
    return register_tasks(kq_app)


@pytest.fixture
def tasks(kq_app, seen):
    return types.SimpleNamespace(
        **{name.split(".")[1]: task for name, task in kq_app.tasks.items() if name.startswith("w.")}
    )


@pytest.fixture
def worker(tasks, kq_worker):
    """kq's in-thread worker (threads, 4 slots), started once the tasks are registered."""
    return kq_worker


def test_links_on_single_tasks_and_saved_groups(kq_app, worker, tasks, seen):
    first = tasks.add.apply_async((1, 2), link=tasks.add.s(10), link_error=tasks.errback.s())
    assert first.get(timeout=10) == 3
    failed = tasks.fail.apply_async(("no",), link_error=[tasks.errback.s()])
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    result = group(tasks.add.s(i, i) for i in range(5)).apply_async()
    result.save()
    restored = GroupResult.restore(result.id, kq_app)
    assert restored.get(timeout=10) == [0, 2, 4, 6, 8] and restored.completed_count() == 5
    deadline = time.monotonic() + 10
    while seen["errback"] != [failed.id]:
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


def test_a_group_and_a_chord_header_are_published_in_one_batch(kq_app, worker, tasks, monkeypatch):
    batches = []
    send_many = kq_app.send_many
    monkeypatch.setattr(kq_app, "send_many", lambda calls: batches.append(len(calls)) or send_many(calls))
    assert group(tasks.add.s(i, i) for i in range(100)).delay().get(timeout=20)[-1] == 198
    assert chord([tasks.add.s(i, i) for i in range(100)], tasks.tsum.s()).delay().get(20) == 9900
    assert batches == [100, 100, 1]  # the group, the chord's header, then (in the worker) its body


def test_workflows_from_a_celery_client(kq_app, worker):
    """As a Celery 5 client sends them: the rest of a chain in the embed, next step last, with
    options kq does not know, runs; a chord, which kq cannot settle, fails instead of hanging."""
    step = {
        "task": "w.add",
        "args": [100],
        "kwargs": {},
        "subtask_type": None,
        "immutable": False,
        "options": {"task_id": "celery-step-2", "reply_to": "abc", "parent_id": "x", "routing_key": "celery"},
    }
    kq_app.send_task("w.add", (1, 2), chain=[step])
    assert kq_app.AsyncResult("celery-step-2").get(timeout=10) == 103
    body = {
        "task": "w.tsum",
        "args": [],
        "kwargs": {},
        "subtask_type": None,
        "immutable": False,
        "options": {"task_id": "celery-body"},
    }  # Celery keeps the chord's size elsewhere
    kq_app.send_task("w.add", (1, 2), chord=body, group_id="celery-group", group_index=0)
    with pytest.raises(KQError, match="kq workers settle only chords sent by kq"):
        kq_app.AsyncResult("celery-body").get(timeout=10)


def test_a_step_that_cannot_be_sent_fails_with_what_follows(kq_app, worker, tasks, caplog):
    result = chain(tasks.add.s(1, 1), tasks.add.s(1, 2), tasks.add.s(5)).apply_async()  # 3 args
    with pytest.raises(TypeError, match="too many positional arguments"):
        result.get(timeout=10)
    assert isinstance(result.parent.result, TypeError)
    with caplog.at_level(logging.ERROR, "kq.canvas"):
        kq_app.send_task("w.add", (1, 2), chain=[{"task": "w.add", "args": 5}])
        after = tasks.add.delay(2, 2)
        assert after.get(timeout=10) == 4  # the worker goes on
    deadline = time.monotonic() + 5
    while "cannot run" not in caplog.text and "malformed" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.05)


def test_an_errback_linked_to_many_parts_runs_once_per_failure(kq_app, worker, tasks, seen):
    flow = chain(tasks.fail.s("first"), group(tasks.add.s(1), tasks.add.s(2))).on_error(tasks.errback.s())
    result = flow.apply_async()
    with pytest.raises(ValueError, match="first"):
        result.get(timeout=10)
    time.sleep(0.5)
    assert seen["errback"] == [result.parent.id]


def test_expired_and_result_less_header_tasks_still_settle_the_chord(kq_app, worker, tasks):
    assert chord([tasks.quiet.s(i) for i in range(5)], tasks.tsum.s()).delay().get(timeout=10) == 10
    header = [tasks.add.s(1, 1), tasks.add.s(2, 2).set(expires=-1)]
    with pytest.raises(TaskRevoked):
        chord(header, tasks.tsum.s()).delay().get(timeout=10)
    assert chord([], tasks.body.s()).delay().get(timeout=10) == []
    assert group([]).delay().get(timeout=10) == []


class Uncounted(SQLiteBackend):
    """A real SQLite backend that declares no counters, as a third-party backend might."""

    capabilities = BackendCapabilities(shared=True, counters=False)

    def __init__(self, url, options=None):
        super().__init__(url.replace("uncounted+", "", 1), options)


@hookimpl
def kq_result_backends():
    return [BackendSpec(("uncounted+sqlite",), Uncounted)]


@pytest.fixture
def uncounted(tmp_path):
    """An app whose result backend has no counters: chords fall back to ``kq.chord_unlock``."""
    get_plugins().register(types.SimpleNamespace(kq_result_backends=kq_result_backends), "uncounted")
    url = f"sqlite:///{tmp_path / 'kq.sqlite3'}"
    app = App("uncounted", broker=url, backend=f"uncounted+{url}", result_expires=2)
    seen = register_tasks(app)
    with worker_thread(app, pool="threads", concurrency=4):
        yield app, seen
    app.close()
    reload_plugins()


def test_without_counters_chords_settle_through_the_unlock_task(uncounted):
    app, seen = uncounted
    add, body, fail, errback = (app.tasks[f"w.{name}"] for name in ("add", "body", "fail", "errback"))
    result = chord([add.s(i, i) for i in range(50)], body.s()).delay()
    assert result.get(timeout=20) == [2 * i for i in range(50)]
    failing = chord([add.s(1, 1), fail.s("unlocked")], body.s()).on_error(errback.s()).delay()
    with pytest.raises(ValueError, match="unlocked"):
        failing.get(timeout=20)
    time.sleep(0.5)
    assert len(seen["body"]) == 1 and seen["errback"] == [failing.parent[1].id]


def test_without_counters_a_header_that_never_finishes_fails_at_the_deadline(uncounted):
    app, _ = uncounted
    sleep, tsum = app.tasks["w.sleep"], app.tasks["w.tsum"]
    start = time.monotonic()
    result = chord([sleep.s(1, 0), sleep.s(2, 5)], tsum.s()).delay()  # results expire after 2 s
    with pytest.raises(KQError, match="did not finish before its results expire"):
        result.get(timeout=20)
    assert time.monotonic() - start < 7
