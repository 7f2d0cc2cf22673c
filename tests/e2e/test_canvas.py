"""The canvas end to end, on real `kq worker` processes, with Redis and with SQLite as broker and
result backend: a chord of 1,000, nested chords, groups of chains, chains of groups, chunks,
failures reaching the errbacks once, and a plugin's primitive inside a chain.

Run with ``-s`` to see the timings (printed, not asserted).
"""

import importlib
import json
import os
import sys
import time
import uuid

import pytest
import redis

from kq import App, Signature, chain, chord, chunks, group
from kq.plugins import get_plugins, reload_plugins
from kq.testing.servers import hold

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

APP = "canvas_app:app"
APPS = os.path.join(os.path.dirname(__file__), "apps")


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend, tmp_path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'kq.sqlite3'}"
        return
    with hold("redis") as (host, port):
        yield f"redis://{host}:{port}/15"


@pytest.fixture
def options(backend, db_url):
    """Redis: a key prefix of the test's own (deleted afterwards), so runs sharing the server
    do not meet."""
    if backend != "redis":
        yield {}
        return
    prefix = f"kqtest-{uuid.uuid4().hex[:12]}:"
    yield {
        "broker_transport_options": {"global_keyprefix": prefix},
        "result_backend_options": {"global_keyprefix": prefix},
    }
    client = redis.Redis.from_url(db_url, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture
def env(env, options):
    return {**env, **{f"KQ_{name.upper()}": json.dumps(value) for name, value in options.items()}}


@pytest.fixture
def client(db_url, options):
    app = App("client", broker=db_url, backend=db_url, **options)
    yield app
    app.close()


@pytest.fixture
def s(client):
    """``s("add", 1, 2)``: a signature of the canvas app's task, built by name on the client."""

    def build(name: str, *args, immutable: bool = False) -> Signature:
        return Signature(f"canvas.{name}", args, immutable=immutable, app=client)

    return build


@pytest.fixture
def workers(start_worker):
    """``workers(n)``: n worker processes of the canvas app (threads, 8 slots each)."""

    def start(count: int = 1) -> None:
        for _ in range(count):
            start_worker("-P", "threads", "-c", "8", app=APP)

    return start


def settle() -> None:
    """Give any duplicate or late run time to show up in the ledger."""
    time.sleep(0.5)


def test_chord_of_1000_runs_the_body_once_with_every_result_in_order(backend, workers, s, ran):
    workers(2)
    chord([s("add", i, i) for i in range(10)])(s("tsum")).get(timeout=30)  # connections warm
    start = time.perf_counter()
    result = chord([s("add", i, i) for i in range(1000)])(s("body"))
    values = result.get(timeout=60)
    elapsed = time.perf_counter() - start
    assert values == [2 * i for i in range(1000)]
    settle()
    assert ran("body") == [result.id]
    assert result.parent.completed_count() == 1000
    print(f"\n[{backend}] chord of 1,000 + body, 2 workers x 8 threads: {elapsed:.3f} s")


def test_nested_chords_complete_in_time_linear_in_their_tasks(backend, workers, s):
    workers(1)

    def nested(depth: int) -> chord:
        if depth == 1:
            return chord([s("add", i, i) for i in range(10)], s("tsum"))
        return chord([nested(depth - 1) for _ in range(10)], s("tsum"))

    nested(1).apply_async().get(timeout=30)  # connections warm
    lines = []
    for depth in (1, 2, 3):
        tasks = sum(10**level for level in range(depth + 1))  # leaves and every body
        start = time.perf_counter()
        assert nested(depth).apply_async().get(timeout=120) == 90 * 10 ** (depth - 1)
        elapsed = time.perf_counter() - start
        lines.append(
            f"{'x'.join(['10'] * depth):>8} chords: {tasks:>5} tasks in {elapsed:.3f} s "
            f"= {tasks / elapsed:,.0f} tasks/s"
        )
    print(f"\n[{backend}] nested chords, 1 worker x 8 threads:\n  " + "\n  ".join(lines))


def test_group_of_chains_chain_of_groups_and_chunks(workers, s):
    workers(1)
    chains = group(chain(s("add", i, i), s("mul", 10), s("add", 1)) for i in range(100))
    groups = chain(
        s("add", 1, 1), group(s("mul", k) for k in range(10)), s("tsum"), group(s("add", k) for k in range(3))
    )
    pieces = chunks(s("add"), [(i, i) for i in range(10_000)], 100)
    sent = [chains.apply_async(), groups.apply_async(), pieces.apply_async()]
    assert sent[0].get(timeout=60) == [20 * i + 1 for i in range(100)]
    assert sent[1].get(timeout=60) == [90, 91, 92]
    parts = sent[2].get(timeout=60)
    assert len(parts) == 100 and all(len(part) == 100 for part in parts)
    assert [value for part in parts for value in part] == [2 * i for i in range(10_000)]


def test_failed_header_task_fails_the_chord_and_runs_its_errback_once(workers, s, ran):
    workers(2)
    header = [s("add", i, i) for i in range(100)]
    header[37] = s("fail", "header 37 failed")
    result = chord(header, s("body")).on_error(s("errback")).apply_async()
    with pytest.raises(ValueError, match="header 37 failed"):
        result.get(timeout=30)
    failing = result.parent[37].id
    assert result.state == "FAILURE" and f"task {failing} failed" in result.traceback
    assert result.parent.get(timeout=30, propagate=False)[36] == 72  # the others still ran
    settle()
    assert ran("errback") == [failing]
    assert ran("body") == []


def test_failure_deep_in_nested_workflow_reaches_the_outermost_errback(workers, s, ran):
    workers(1)
    inner = chord([s("add", 1, 1), s("fail", "deep")], s("tsum"))
    middle = chord([inner, s("add", 2, 2)], s("tsum"))
    result = chain(middle, s("add", 5)).on_error(s("errback")).apply_async()
    with pytest.raises(ValueError, match="deep"):
        result.get(timeout=30)
    middle_result = result.parent
    inner_result = middle_result.parent[0]
    failing = inner_result.parent[1].id
    for skipped in (inner_result, middle_result, result):
        assert skipped.state == "FAILURE" and isinstance(skipped.result, ValueError)
    settle()
    assert ran("errback") == [failing]


@pytest.fixture
def race(monkeypatch):
    """The test plugin's primitive, registered in this process as its entry point would be (the
    workers register it in canvas_app)."""
    monkeypatch.syspath_prepend(APPS)
    module = importlib.import_module("kq_race")
    get_plugins().register(module, "kq-race")
    yield module.race
    reload_plugins()
    sys.modules.pop("kq_race", None)


def test_a_plugins_primitive_runs_inside_a_chain(workers, s, race):
    workers(1)
    start = time.perf_counter()
    result = chain(s("add", 1, 2), race(s("sleep", 5.0), s("mul", 3)), s("add", 100)).apply_async()
    assert result.get(timeout=30) == 109  # 3, then mul(3, 3) beats sleep(3, 5.0), then + 100
    assert result.parent.get(timeout=5) == 9
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("pool", ["solo", "prefork", "gevent", "eventlet", "asyncio"])
def test_workflows_go_on_from_every_pool(backend, pool, start_worker, s, ran):
    """The continuation runs where the task ran: a child process, a greenlet, an event loop's
    I/O thread."""
    if pool not in get_plugins().pools:
        pytest.skip(f"kq-{pool} is not installed")
    start_worker("-P", pool, "-c", "1" if pool == "solo" else "4", app=APP, name=pool)
    flow = chain(chord([s("add", i, i) for i in range(20)], s("tsum")), s("add", 1))
    assert flow.apply_async().get(timeout=60) == 381
    failing = chain(s("fail", pool), s("add", 1)).on_error(s("errback")).apply_async()
    with pytest.raises(ValueError, match=pool):
        failing.get(timeout=30)
    settle()
    assert ran("errback") == [failing.parent.id]
