"""Bugs the fuzz tests found in the kernel and kq-sqlite, one test each, with a real worker on a
real SQLite broker where the bug was in what a worker does (kq-redis' are in its own tests)."""

import sqlite3
import time
import uuid

import pytest

from kq import App
from kq.exceptions import MessageRejected
from kq.protocol import TaskMessage, decode_task, encode_task
from kq.testing.fuzz import TracebackLog
from kq.testing.worker import worker_thread
from kq.transport import REJECT_REASON_HEADER, dead_letter_headers, dead_letter_queue


@pytest.fixture
def app(tmp_path):
    url = f"sqlite:///{tmp_path / 'kq.sqlite3'}"
    app = App(broker=url, result_backend=url)

    @app.task(name="fuzz.sink")
    def sink(*args, **kwargs):
        return "done"

    @app.task(name="fuzz.boom")
    def boom():
        raise ValueError("boom")

    app.db_path = tmp_path / "kq.sqlite3"
    return app


def drain(app: App, queue: str, count: int, log: TracebackLog) -> dict:
    """Run a worker on ``queue`` until it has handled ``count`` messages; return its stats."""
    with worker_thread(app, queues=[queue], pool="solo") as worker:
        deadline = time.monotonic() + 60
        stats = worker.stats
        while stats.rejected + stats.succeeded + stats.failed < count or worker.running_count:
            assert time.monotonic() < deadline, f"stuck: {stats}"
            time.sleep(0.05)
        assert app.tasks["fuzz.sink"].apply_async(queue=queue).get(timeout=30) == "done"
    assert not log.tracebacks, log.report()
    return stats


@pytest.mark.parametrize(
    "headers",
    ["[]", '"task"', '{"task": "\\ud800", "id": "\\ud800"}'],
    ids=["a list", "a string", "lone surrogates"],
)
def test_a_hostile_writers_headers_are_dead_lettered_not_delivered_forever(app, headers):
    """Headers that are not a mapping, or hold a lone surrogate, made the dead letter raise
    (``{**headers}``; UTF-8 cannot encode a surrogate), so the message stayed leased and came
    back after every visibility timeout, to be rejected again."""
    transport = app.new_transport()
    message = TaskMessage(id=str(uuid.uuid4()), task="fuzz.sink")
    transport.publish("hostile", encode_task(message, app.serializers, "json"))
    with sqlite3.connect(app.db_path) as db:  # someone with write access to the file
        db.execute("UPDATE kq_messages SET headers = ? WHERE queue = 'hostile'", (headers,))
    with TracebackLog() as log:
        stats = drain(app, "hostile", 1, log)
    assert stats.rejected == 1 and stats.rejected_by_reason == {"malformed": 1}
    assert transport.depth("hostile") == 0 and transport.depth(dead_letter_queue("hostile")) == 1
    [dead] = transport.fetch([dead_letter_queue("hostile")], 1, 1.0)
    assert dead.envelope.headers[REJECT_REASON_HEADER].startswith("malformed: ")
    transport.close()


def test_dead_letter_headers_of_headers_that_are_not_a_mapping():
    assert dead_letter_headers(["x"], "q", "malformed: x")[REJECT_REASON_HEADER] == "malformed: x"


@pytest.mark.parametrize("header", ["id", "task", "root_id", "parent_id", "group"])
def test_ids_with_lone_surrogates_are_malformed(app, header):
    """JSON's ``"\\ud800"`` decodes to a string no broker or backend can store: a task with such
    an id ran, and its result could never be written (a traceback per message)."""
    envelope = encode_task(TaskMessage(id="i", task="fuzz.sink"), app.serializers, "json")
    headers = {**envelope.headers, header: "\ud800"}
    with pytest.raises(MessageRejected) as caught:
        decode_task(
            type(envelope)(envelope.body, envelope.content_type, headers=headers), app.serializers, app.accept
        )
    assert caught.value.reason == "malformed"


MALFORMED = {
    # A chain step whose options are not a mapping broke the handler of its own error.
    "options not a mapping": dict(chain=[{"task": "fuzz.sink", "options": "x"}]),
    # An unhashable primitive type raised TypeError from the registry.
    "subtask_type a list": dict(
        callbacks=[{"task": "fuzz.sink", "subtask_type": [1]}],
        errbacks=[{"task": "fuzz.sink", "subtask_type": [1]}],
    ),
    # A task id that is not text reached the broker (sqlite3.ProgrammingError, a traceback).
    "task_id a list": dict(chain=[{"task": "fuzz.sink", "options": {"task_id": [1]}}]),
}


@pytest.mark.parametrize("embed", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("task", ["fuzz.sink", "fuzz.boom"])
def test_a_malformed_workflow_is_logged_without_a_traceback(app, embed, task):
    """The task's own outcome stands; what follows it is logged as malformed, once, at ERROR,
    with no traceback (there is no kq bug to debug), and the worker goes on."""
    transport = app.new_transport()
    message = TaskMessage(id=str(uuid.uuid4()), task=task, **embed)
    transport.publish("workflow", encode_task(message, app.serializers, "json"))
    with TracebackLog() as log:
        stats = drain(app, "workflow", 1, log)
    assert stats.rejected == 0 and stats.succeeded + stats.failed == 2
    assert app.AsyncResult(message.id).state == ("SUCCESS" if task == "fuzz.sink" else "FAILURE")
    errors = [r.getMessage() for r in log.records if r.levelname == "ERROR"]
    assert any("workflow" in text for text in errors), errors
    transport.close()
