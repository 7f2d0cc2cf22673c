"""kq.signals with a real worker (in a thread of this process) on SQLite: receivers see the
publish, task and worker signals with the right arguments, and a receiver that raises fails
neither the task nor the worker."""

import threading
import time
import uuid

import pytest

from kq import App, signals
from kq.testing.worker import worker_thread


@pytest.fixture
def app(db_url):
    app = App(
        "signalled", broker=db_url, backend=db_url, task_default_queue=f"signals-{uuid.uuid4().hex[:8]}"
    )

    @app.task(name="sig.add")
    def add(x, y):
        return x + y

    @app.task(name="sig.fail")
    def fail():
        raise ValueError("task failed on purpose")

    yield app
    app.close()


@pytest.fixture
def seen():
    """Every signal sent, as (signal name, arguments), with receivers connected to all of them
    plus a receiver that raises on every task signal; all disconnected afterwards."""
    events: list[tuple[str, dict]] = []
    lock = threading.Lock()
    connected = []

    def recorder(name):
        def record(**arguments):
            with lock:
                events.append((name, arguments))

        return record

    def broken(**arguments):
        raise RuntimeError("a receiver's bug")

    for signal in signals.SIGNALS:
        connected.append((signal, signal.connect(recorder(signal.name))))
        if signal.name.startswith("task_"):
            connected.append((signal, signal.connect(broken)))
    yield events
    for signal, receiver in connected:
        signal.disconnect(receiver)


def named(events, name):
    return [arguments for signal, arguments in events if signal == name]


def test_a_worker_sends_the_lifecycle_signals(app, seen, caplog):
    with worker_thread(app, pool="threads", concurrency=2) as worker:
        ok = app.tasks["sig.add"].delay(2, 3)
        bad = app.tasks["sig.fail"].delay()
        unknown = app.send_task("sig.not_registered")
        assert ok.get(timeout=30) == 5  # the raising receivers did not fail it
        with pytest.raises(ValueError, match="on purpose"):
            bad.get(timeout=30)
        # The rejection is signalled after the worker refused the message; wait for it.
        deadline = time.monotonic() + 30
        while not named(seen, "task_rejected") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert named(seen, "worker_ready") == [{"worker": worker}]
        assert named(seen, "worker_shutdown") == []
    assert named(seen, "worker_shutdown") == [{"worker": worker}]

    queue = app.conf.task_default_queue
    published = [(a["message"].id, a["queue"]) for a in named(seen, "before_task_publish")]
    assert published == [(ok.id, queue), (bad.id, queue), (unknown.id, queue)]
    assert [(a["message"].id, a["queue"]) for a in named(seen, "after_task_publish")] == published

    assert sorted(a["request"].id for a in named(seen, "task_prerun")) == sorted([ok.id, bad.id])
    (success,) = named(seen, "task_success")
    assert (success["task"].name, success["request"].id, success["retval"]) == ("sig.add", ok.id, 5)
    (failure,) = named(seen, "task_failure")
    assert failure["request"].id == bad.id and isinstance(failure["exc"], ValueError)
    assert "task failed on purpose" in failure["traceback"]
    postrun = {a["request"].id: (a["state"], a["retval"]) for a in named(seen, "task_postrun")}
    assert postrun == {ok.id: ("SUCCESS", 5), bad.id: ("FAILURE", None)}
    (rejected,) = named(seen, "task_rejected")
    assert rejected["reason"] == "unknown-task" and "sig.not_registered" in rejected["detail"]
    assert rejected["delivery"].envelope.headers["id"] == unknown.id
    assert worker.stats.rejected == 1
    assert "a receiver's bug" in caplog.text  # logged, not raised
