"""Routing end to end: ``task_routes`` by glob and by function sends each call to its queue, and
two real `kq worker` processes, each consuming one queue (``-Q``), run exactly their tasks, with
SQLite and with Redis as the broker. The worker that ran a task is read from its stored result."""

import uuid
from types import SimpleNamespace

import pytest

from kq import App

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "redis"])
def broker_settings(request: pytest.FixtureRequest) -> dict:
    """The test's SQLite file, or the real Redis under a key prefix of its own (conftest)."""
    return request.getfixturevalue("redis_broker") if request.param == "redis" else {}


@pytest.fixture
def queues() -> SimpleNamespace:
    tag = uuid.uuid4().hex[:8]
    return SimpleNamespace(a=f"route-a-{tag}", b=f"route-b-{tag}")


def test_two_workers_each_run_the_tasks_routed_to_their_queue(db_url, broker_settings, queues, start_worker):
    def big_adds_to_a(name, args, kwargs, options, task=None):
        if name == "e2e.add":
            return queues.a if args[0] >= 50 else {"queue": queues.b, "priority": 5}
        return None

    client = App(
        "router",
        **{"broker_url": db_url, "result_backend": db_url, **broker_settings},
        task_routes=[{"e2e.dou*": queues.a}, big_adds_to_a],
    )
    try:
        start_worker("-Q", queues.a, "-P", "threads", "-c", "4", name="a")
        start_worker("-Q", queues.b, "-P", "threads", "-c", "4", name="b")
        doubles = [client.send_task("e2e.double", [n]) for n in range(20)]
        adds = [client.send_task("e2e.add", [n, 1]) for n in range(100)]
        batch = client.send_many(
            SimpleNamespace(task="e2e.add", args=[n, 0], kwargs={}, options={}) for n in (10, 90)
        )
        forced = client.send_task("e2e.double", [7], queue=queues.b)  # the call's queue wins

        assert [r.get(timeout=60) for r in doubles] == [2 * n for n in range(20)]
        assert [r.get(timeout=60) for r in adds] == [n + 1 for n in range(100)]
        assert [r.get(timeout=60) for r in batch] == [10, 90]
        assert forced.get(timeout=60) == 14

        def ran_on(result):
            meta = client.read_result(result.id)
            return meta.worker, meta.queue

        on_a, on_b = ("a0@test", queues.a), ("b1@test", queues.b)
        assert {ran_on(r) for r in doubles} == {on_a}
        assert [ran_on(r) for r in adds] == [on_b] * 50 + [on_a] * 50
        assert [ran_on(r) for r in batch] == [on_b, on_a]
        assert ran_on(forced) == on_b
    finally:
        client.close()


def test_every_way_of_sending_publishes_to_the_routed_queue(tmp_path):
    """apply_async, send_task and send_many choose alike: call > routes > task > default."""
    url = f"sqlite:///{tmp_path / 'kq.sqlite3'}"
    app = App(
        "sender",
        broker=url,
        backend=None,
        task_default_queue="dflt",
        task_routes={"t.routed": {"queue": "routed", "priority": 3}},
    )

    @app.task(name="t.routed", queue="own")
    def routed():
        pass

    @app.task(name="t.own", queue="own")
    def own():
        pass

    call = SimpleNamespace
    sent = {
        "routed": [
            routed.delay(),
            app.send_task("t.routed"),
            *app.send_many([call(task="t.routed", args=(), kwargs={}, options={})]),
        ],
        "own": [
            own.delay(),
            app.send_task("t.own"),
            routed.apply_async(queue="own"),
            *app.send_many([call(task="t.own", args=(), kwargs={}, options={})]),
        ],
        "called": [
            routed.apply_async(queue="called"),
            app.send_task("t.routed", queue="called"),
            *app.send_many(
                [call(task="t.routed", args=(), kwargs={}, options={"queue": "called", "priority": 8})]
            ),
        ],
        "dflt": [app.send_task("t.unknown")],
    }
    priorities = {}
    transport = app.new_transport()
    try:
        for queue, results in sent.items():
            got = transport.fetch([queue], 100, 1.0)
            assert sorted(d.envelope.headers["id"] for d in got) == sorted(r.id for r in results)
            priorities.update((d.envelope.headers["id"], d.envelope.priority) for d in got)
            transport.ack(got)
        assert {priorities[r.id] for r in sent["routed"]} == {3}
        assert priorities[sent["called"][-1].id] == 8  # a call's priority wins over the route's
        assert priorities[sent["own"][0].id] is None
    finally:
        transport.close()
        app.close()
