"""The fleet model events build (shared by ``kq events`` and ``kq dashboard``), and the
dashboard's API in one process on the memory:// broker and backend (tests/e2e/test_dashboard.py
runs it on Redis with a real worker and a real browser)."""

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kq import App
from kq.dashboard.server import DashboardServer, serve
from kq.dashboard.state import Dashboard
from kq.monitor import MAX_TASKS, Monitor


def test_a_task_follows_its_events_and_a_late_task_sent_does_not_set_it_back() -> None:
    monitor = Monitor()
    monitor.add(
        {
            "type": "task-received",
            "hostname": "w@x",
            "uuid": "a",
            "name": "t.add",
            "args": "(1, 2)",
            "kwargs": "{}",
        },
        10.0,
    )
    monitor.add({"type": "task-sent", "hostname": "client", "uuid": "a", "name": "t.add"}, 10.1)
    assert monitor.tasks["a"]["state"] == "RECEIVED" and monitor.tasks["a"]["sent"] == 10.1
    monitor.add({"type": "task-started", "hostname": "w@x", "uuid": "a"}, 10.2)
    monitor.add({"type": "task-succeeded", "hostname": "w@x", "uuid": "a", "runtime": 0.5}, 10.7)
    task = monitor.tasks["a"]
    assert (task["state"], task["worker"], task["runtime"], task["args"]) == ("SUCCESS", "w@x", 0.5, "(1, 2)")
    assert monitor.counts["succeeded"] == 1 and monitor.received == 4
    assert monitor.throughput(11.0) == pytest.approx(0.1) and monitor.throughput(30.0) == 0
    assert "client" not in monitor.workers and monitor.online(monitor.workers["w@x"][0], 15.0)


def test_the_oldest_tasks_are_forgotten_first() -> None:
    monitor = Monitor()
    for n in range(MAX_TASKS + 5):
        monitor.add({"type": "task-received", "hostname": "w", "uuid": str(n)}, 1.0)
    monitor.add({"type": "task-started", "hostname": "w", "uuid": "5"}, 2.0)  # touched: kept
    monitor.add({"type": "task-received", "hostname": "w", "uuid": "new"}, 2.0)
    assert len(monitor.tasks) == MAX_TASKS and "6" not in monitor.tasks and "5" in monitor.tasks
    assert list(monitor.tasks)[-2:] == ["5", "new"]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[DashboardServer]:
    app = App("dash", broker="memory://", backend="memory://")
    state = Dashboard(app)
    server = serve(state, "127.0.0.1", 0, **getattr(request, "param", {}))
    yield server
    server.shutdown()
    server.server_close()
    state.stop()
    app.close()


def get(server: DashboardServer, path: str, auth: str | None = None, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.server_port}{path}",
        method=method,
        headers={"Authorization": auth} if auth else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if path.startswith("/api") else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("server", [{"auth": "ops:pa55"}], indirect=True)
def test_basic_auth_guards_every_request(server: DashboardServer) -> None:
    good = "Basic " + base64.b64encode(b"ops:pa55").decode()
    assert get(server, "/")[0] == 401 and get(server, "/api/overview")[0] == 401
    assert get(server, "/api/overview", "Basic " + base64.b64encode(b"ops:pa5").decode())[0] == 401
    assert get(server, "/static/app.js", good)[0] == 200
    status, overview = get(server, "/api/overview", good)
    assert status == 200 and overview["events"] == 0 and overview["broker"] == "memory://"


@pytest.mark.parametrize("server", [{"token": "t0k"}], indirect=True)
def test_a_token_guards_the_api_and_revoke_marks_the_backend(server: DashboardServer) -> None:
    assert get(server, "/")[0] == 200  # the page itself holds no data
    assert get(server, "/api/tasks", "Bearer t0K")[0] == 401
    assert get(server, "/api/tasks", "Bearer t0k") == (200, {"tasks": []})
    assert get(server, "/api/tasks/unknown", "Bearer t0k")[0] == 404
    assert get(server, "/api/tasks/abc/revoke", "Bearer t0k", "POST") == (200, {"ok": "revoked abc"})
    detail = get(server, "/api/tasks/abc", "Bearer t0k")[1]
    assert detail["state"] == detail["stored"] == "REVOKED"
    assert get(server, "/api/tasks/abc/retry", "Bearer t0k", "POST")[0] == 400  # name unknown


def test_both_auth_kinds_at_once_are_refused() -> None:
    from kq.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="not both"):
        DashboardServer(Dashboard(App("dash", broker="memory://")), "127.0.0.1", 0, auth="a:b", token="t")
