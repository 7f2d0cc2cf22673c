"""The Flask example end to end: its views, driven through Flask's test client, send tasks to a
real ``kq worker`` process (SQLite broker and backend in a temporary directory), and the worker
runs them inside its own Flask app's context."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient
from flask_example_app import create_app

from kq.testing.worker import WorkerProcess

EXAMPLE = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("flask-example")


@pytest.fixture(scope="module")
def kq_settings(workdir: pathlib.Path) -> dict[str, str]:
    url = f"sqlite:///{workdir / 'kq.sqlite3'}"
    return {"broker_url": url, "result_backend": url}


@pytest.fixture(scope="module")
def database(workdir: pathlib.Path) -> str:
    return str(workdir / "notes.sqlite3")


@pytest.fixture(scope="module")
def worker_greeting() -> str:
    """The worker's GREETING setting, which only its Flask config holds (the web app's is the
    default "Hello"): a task that answers with it read it through ``current_app``."""
    return f"Ahoy-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(
    workdir: pathlib.Path, kq_settings: dict[str, str], database: str, worker_greeting: str
) -> Iterator[WorkerProcess]:
    """``kq worker -A flask_example_worker:kq_app``, configured the Flask way: through
    ``FLASK_*`` environment variables that the app factory reads."""
    pythonpath = os.pathsep.join(filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")]))
    env = {
        "PYTHONPATH": pythonpath,
        "FLASK_KQ": json.dumps(kq_settings),
        "FLASK_DATABASE": database,
        "FLASK_GREETING": worker_greeting,
    }
    with WorkerProcess(
        "flask_example_worker:kq_app",
        ["-P", "threads", "-c", "2", "-n", "flask@test"],
        env=env,
        cwd=str(workdir),
        log_path=str(workdir / "worker.log"),
    ) as process:  # started here, killed on the way out if it has not stopped
        yield process
        assert process.stop() == 0, process.output()


@pytest.fixture
def flask_app(kq_settings: dict[str, str], database: str) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "KQ": kq_settings, "DATABASE": database})
    yield app
    app.extensions["kq"].close()


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


def wait_until_ready(client: FlaskClient, result_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the result view as a browser would, until the task has finished."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(result_url)
        assert response.status_code == 200
        body = response.get_json()
        if body["state"] in ("SUCCESS", "FAILURE", "REVOKED") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_a_view_sends_a_task_that_the_worker_runs_in_its_flask_app_context(
    client: FlaskClient, worker: WorkerProcess, worker_greeting: str
) -> None:
    response = client.post("/greetings", json={"name": "Ada"})
    assert response.status_code == 202
    sent = response.get_json()
    body = wait_until_ready(client, sent["result_url"])
    assert body == {"task_id": sent["task_id"], "state": "SUCCESS", "value": f"{worker_greeting}, Ada!"}, (
        worker.output()
    )


def test_a_task_uses_the_apps_database_through_flask_g(client: FlaskClient, worker: WorkerProcess) -> None:
    text = f"buy milk {uuid.uuid4().hex[:6]}"
    sent = client.post("/notes", json={"text": text}).get_json()
    body = wait_until_ready(client, sent["result_url"])
    assert body["state"] == "SUCCESS", worker.output()
    notes = client.get("/notes").get_json()["notes"]
    assert {"id": body["value"], "text": text} in notes


def test_many_requests_each_get_their_own_result(
    client: FlaskClient, worker: WorkerProcess, worker_greeting: str
) -> None:
    names = [f"user{n}" for n in range(10)]
    sent = [client.post("/greetings", json={"name": name}).get_json() for name in names]
    values = [wait_until_ready(client, s["result_url"])["value"] for s in sent]
    assert values == [f"{worker_greeting}, {name}!" for name in names]


def test_the_result_view_says_pending_for_a_task_no_worker_has_finished(client: FlaskClient) -> None:
    task_id = str(uuid.uuid4())
    assert client.get(f"/tasks/{task_id}").get_json() == {"task_id": task_id, "state": "PENDING"}


def test_a_request_without_the_field_is_refused_and_sends_nothing(client: FlaskClient) -> None:
    assert client.post("/greetings", json={}).status_code == 400
    assert client.post("/notes", data="not json").status_code == 400


def test_tasks_run_in_the_app_context_when_applied_eagerly(flask_app: Flask, database: str) -> None:
    kq_app = flask_app.extensions["kq"]
    with pytest.raises(RuntimeError, match="application context"):
        current_app.config  # noqa: B018 - outside any context here: the task must push one
    assert kq_app.tasks["flask_example_tasks.greet"].apply(args=("Bob",)).get() == "Hello, Bob!"
    note_id = kq_app.tasks["flask_example_tasks.save_note"].apply(args=("eager",)).get()
    assert isinstance(note_id, int)


def test_an_async_task_runs_in_the_app_context_across_its_awaits(flask_app: Flask) -> None:
    kq_app = flask_app.extensions["kq"]

    @kq_app.task(name=f"flask_example.test_async_{uuid.uuid4().hex[:8]}")
    async def greeting_after_a_nap() -> str:
        await asyncio.sleep(0.01)
        return current_app.config["GREETING"]

    assert greeting_after_a_nap.apply().get() == "Hello"
