"""``App.send_many``: the batch publish path checks each call as ``apply_async`` does and keeps order."""

from types import SimpleNamespace

import pytest

from kq import App


def call(task: str, *args, **options) -> SimpleNamespace:
    return SimpleNamespace(task=task, args=args, kwargs={}, options=options)


@pytest.fixture
def app(tmp_path):
    app = App("batch", broker=f"sqlite:///{tmp_path / 'kq.sqlite3'}", backend=None)

    @app.task(name="t.add", queue="adds")
    def add(x: int, y: int) -> int:
        return x + y

    yield app
    app.close()


def test_messages_arrive_in_order_on_each_tasks_queue(app):
    sent = app.send_many([call("t.add", n, n) for n in range(50)] + [call("t.other", 1, queue="else")])
    assert len(sent) == 51 and len({r.id for r in sent}) == 51
    transport = app.new_transport()
    try:
        adds = transport.fetch(["adds"], 100, 1.0)
        assert [d.envelope.headers["id"] for d in adds] == [r.id for r in sent[:50]]
        assert [d.envelope.headers["id"] for d in transport.fetch(["else"], 10, 1.0)] == [sent[50].id]
        transport.ack(adds)
    finally:
        transport.close()


def test_a_bad_call_fails_before_anything_is_sent(app):
    with pytest.raises(TypeError, match="t.add"):
        app.send_many([call("t.add", 1, 2), call("t.add", 1)])  # missing argument
    with pytest.raises(TypeError, match="unknown option"):
        app.send_many([call("t.add", 1, 2, qeueu="typo")])
    transport = app.new_transport()
    try:
        assert transport.depth("adds") == 0
    finally:
        transport.close()


def test_nothing_to_send_opens_no_connection(app):
    assert app.send_many([]) == []
    assert app._publisher is None


def test_a_workflow_is_refused_with_a_pointer_to_apply_async(app):
    from kq import chain

    with pytest.raises(TypeError, match="apply_async"):
        app.send_many([chain(app.tasks["t.add"].s(1, 2), app.tasks["t.add"].s(3))])
