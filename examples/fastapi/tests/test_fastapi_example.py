"""The FastAPI example end to end: its async endpoints, driven through FastAPI's ``TestClient``
and httpx, publish to a real ``kq worker -P asyncio`` process (SQLite broker and backend in a
temporary directory) and await the results it stores."""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from fastapi_example_app import api
from fastapi_example_tasks import kq_app

from kq.testing.worker import WorkerProcess

EXAMPLE = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("fastapi-example")


@pytest.fixture(scope="module")
def worker(workdir: pathlib.Path) -> Iterator[WorkerProcess]:
    """The example's kq App, in this process and in a ``kq worker -P asyncio`` process, on one
    SQLite file: the worker reads it from ``KQ_*`` variables, this process is configured in code
    (the app was not connected yet, so it may still be)."""
    url = f"sqlite:///{workdir / 'kq.sqlite3'}"
    kq_app.configure(broker_url=url, result_backend=url)
    pythonpath = os.pathsep.join(filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": pythonpath, "KQ_BROKER_URL": url, "KQ_RESULT_BACKEND": url}
    with WorkerProcess(
        "fastapi_example_tasks:kq_app",
        ["-P", "asyncio", "-c", "50", "-n", "fastapi@test"],
        env=env,
        cwd=str(workdir),
        log_path=str(workdir / "worker.log"),
    ) as process:  # started here, killed on the way out if it has not stopped
        yield process
        assert process.stop() == 0, process.output()
    kq_app.close()


@pytest.fixture
def client(worker: WorkerProcess) -> Iterator[TestClient]:
    with TestClient(api) as client:  # runs the lifespan: kq's connections close at its end
        yield client


def test_an_endpoint_publishes_an_async_task_and_another_awaits_its_result(
    client: TestClient, worker: WorkerProcess
) -> None:
    response = client.post("/squares", json={"x": 7})
    assert response.status_code == 202
    sent = response.json()
    assert sent["result_url"] == f"/tasks/{sent['task_id']}"
    body = client.get(sent["result_url"], params={"wait": 20}).json()
    expected = {"task_id": sent["task_id"], "state": "SUCCESS", "value": 49, "error": None}
    assert body == expected, worker.output()


def test_a_request_fans_out_and_awaits_every_result_while_the_worker_awaits_them_together(
    client: TestClient, worker: WorkerProcess
) -> None:
    xs = list(range(1, 21))
    begin = time.monotonic()
    response = client.post("/squares/sum", json={"xs": xs, "delay": 0.5})
    elapsed = time.monotonic() - begin
    assert response.status_code == 200, worker.output()
    assert response.json() == {"squares": [x * x for x in xs], "total": sum(x * x for x in xs)}
    # One after another the 20 naps would take 10 s; on the asyncio pool they overlap.
    assert elapsed < 5, f"{elapsed:.2f} s"


def test_a_plain_def_task_is_awaited_within_the_request(client: TestClient, worker: WorkerProcess) -> None:
    assert client.post("/additions", json={"x": 1, "y": 2}).json() == {"value": 3}


def test_a_request_awaiting_a_slow_result_does_not_hold_up_the_others(worker: WorkerProcess) -> None:
    finished: dict[str, float] = {}

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as http:
            slow = (await http.post("/squares", json={"x": 3, "delay": 2.0})).json()
            quick = (await http.post("/squares", json={"x": 4})).json()

            async def read(name: str, url: str) -> httpx.Response:
                response = await http.get(url, params={"wait": 20})
                finished[name] = time.monotonic()
                return response

            return await asyncio.gather(read("slow", slow["result_url"]), read("quick", quick["result_url"]))

    slow, quick = asyncio.run(main())
    assert slow.json()["value"] == 9 and quick.json()["value"] == 16, worker.output()
    # The quick answer came back while the slow request was still awaiting its result: with
    # the loop blocked by that wait, it could only come after it.
    assert finished["quick"] + 0.5 < finished["slow"], finished


def test_an_unknown_task_reads_as_pending_after_the_wait(client: TestClient) -> None:
    task_id = str(uuid.uuid4())
    body = client.get(f"/tasks/{task_id}", params={"wait": 0.2}).json()
    assert body == {"task_id": task_id, "state": "PENDING", "value": None, "error": None}


def test_invalid_input_is_refused_before_anything_is_sent(client: TestClient) -> None:
    assert client.post("/squares", json={"x": "seven"}).status_code == 422
    assert client.post("/squares/sum", json={"xs": []}).status_code == 422
