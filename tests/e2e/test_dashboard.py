"""``kq dashboard`` on the real Redis with a real worker (``-E``): its JSON API over HTTP, and the
page in a real headless Chromium (Debian's chromium and chromedriver, driven by Selenium) that
sees the worker and the counts update and revokes a held task with its button."""

import base64
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kq import App

from .conftest import APPS

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: Where the screenshot is copied for CI to keep (tests/artifacts/ is ignored by git).
ARTIFACTS = pathlib.Path(
    os.environ.get("KQ_TEST_ARTIFACTS") or pathlib.Path(__file__).parents[1] / "artifacts"
)


@pytest.fixture
def broker_settings(redis_broker: dict[str, Any]) -> dict[str, Any]:
    return redis_broker


@pytest.fixture
def start_dashboard(env: dict[str, str]) -> Iterator[Callable[..., str]]:
    """``start_dashboard(*args)`` runs ``kq dashboard -A e2e_app:app --port 0 ARGS`` and gives
    its base URL; every one is stopped at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "kq", "dashboard", "-A", "e2e_app:app", "--port", "0", *args],
            env={**os.environ, **env},
            cwd=str(APPS),
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        line = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"kq dashboard did not start: {line}{process.stderr.read() if not line else ''}"
        return f"http://127.0.0.1:{match[1]}"

    yield start
    for process in started:
        process.terminate()
        process.communicate(timeout=10)


def call(url: str, method: str = "GET", body: Any = None, auth: str | None = None) -> tuple[int, Any]:
    """``(status, JSON body or page text)`` of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Authorization": auth} if auth else {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            is_json = "json" in response.headers["Content-Type"]
            return response.status, json.loads(text) if is_json else text
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
    return value


def test_the_api_answers_with_the_token_only_and_shows_tasks_results_and_failures(
    client: App, start_worker, start_dashboard
) -> None:
    start_worker("-P", "threads", "-c", "2", "-E")
    base = start_dashboard("--token", "s3cret")
    bearer = "Bearer s3cret"
    assert call(f"{base}/api/overview")[0] == 401
    assert call(f"{base}/api/overview", auth="Bearer wrong")[0] == 401
    status, page = call(f"{base}/")  # the page holds no data: a browser opens it as /#token=...
    assert status == 200 and "kq dashboard" in page

    ok = client.send_task("e2e.add", [2, 3])
    failed = client.send_task("e2e.fail", ["boom"])
    assert ok.get(timeout=20) == 5
    failed.get(timeout=20, propagate=False)
    overview = eventually(
        lambda: (
            (o := call(f"{base}/api/overview", auth=bearer)[1])["counts"]["succeeded"] >= 1
            and o["counts"]["failed"] >= 1
            and o
        )
    )
    assert [w["name"] for w in overview["workers"]] == ["w0@test"] and overview["workers"][0]["online"]
    assert overview["events"] > 0 and overview["queues"][0]["name"] == "celery"
    assert set(overview["history"]) == {"times", "depths"} and "celery" in overview["history"]["depths"]
    assert overview["failures"][0]["id"] == failed.id and "boom" in overview["failures"][0]["exception"]
    assert "s3cret" not in json.dumps(overview)

    tasks = call(f"{base}/api/tasks?state=FAILURE", auth=bearer)[1]["tasks"]
    assert [(t["id"], t["name"], t["worker"]) for t in tasks] == [(failed.id, "e2e.fail", "w0@test")]
    assert [t["id"] for t in call(f"{base}/api/tasks?name=add", auth=bearer)[1]["tasks"]] == [ok.id]
    detail = call(f"{base}/api/tasks/{failed.id}", auth=bearer)[1]
    assert detail["state"] == detail["stored"] == "FAILURE" and detail["args"] == "('boom',)"
    assert "ValueError" in detail["traceback"] and "boom" in detail["traceback"]
    assert call(f"{base}/api/tasks/{ok.id}", auth=bearer)[1]["result"] == "5"
    assert call(f"{base}/api/tasks/nope", auth=bearer)[0] == 404

    status, retried = call(f"{base}/api/tasks/{failed.id}/retry", "POST", auth=bearer)
    assert status == 200 and retried["id"] != failed.id
    again = client.AsyncResult(retried["id"])
    assert isinstance(again.get(timeout=20, propagate=False), ValueError) and "boom" in str(again.result)

    status, answer = call(f"{base}/api/rate_limit", "POST", {"task": "e2e.add", "rate": "5/s"}, bearer)
    assert status == 200 and "w0@test" in answer["replies"]
    assert eventually(
        lambda: (
            call(f"{base}/api/overview", auth=bearer)[1]["workers"][0].get("rate_limits")
            == {"e2e.add": "5/s"}
        ),
        10,
    )
    assert call(f"{base}/api/rate_limit", "POST", {"task": 1}, bearer)[0] == 400


def test_basic_auth_guards_the_page_too(start_dashboard) -> None:
    base = start_dashboard("--auth", "ops:pa55")
    assert call(f"{base}/")[0] == 401
    assert call(f"{base}/api/overview", auth="Basic " + base64.b64encode(b"ops:nope").decode())[0] == 401
    status, overview = call(f"{base}/api/overview", auth="Basic " + base64.b64encode(b"ops:pa55").decode())
    assert status == 200 and overview["events"] == 0 and overview["workers"] == []


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through chromedriver; skipped off CI when either is missing (CI must
    install them: a missing browser there fails the test)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (the test extra)")
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no selenium-manager
    yield driver
    driver.quit()


def test_the_page_shows_the_worker_and_counts_and_revokes_a_held_task(
    client: App, start_worker, start_dashboard, browser, tmp_path: pathlib.Path
) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def text(selector: str) -> str:
        try:
            return browser.find_element(By.CSS_SELECTOR, selector).text
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    def wait(condition: Callable[[], Any], timeout: float = 20) -> Any:
        return WebDriverWait(browser, timeout, 0.2).until(lambda _: condition())

    client.configure(task_send_sent_event=True)  # a task the broker holds is seen by task-sent only
    base = start_dashboard()
    browser.get(base)
    wait(lambda: browser.find_element(By.ID, "no-events").is_displayed())  # nobody sends events yet
    for n in range(3):
        client.send_task("e2e.add", [n, n])
    failed = client.send_task("e2e.fail", ["boom"])
    wait(lambda: text('#queues tr[data-queue="celery"]') == "celery 4")  # no worker yet
    assert not browser.find_element(By.ID, "no-events").is_displayed()  # the task-sent events came
    start_worker("-P", "threads", "-c", "2", "-E")
    wait(lambda: "online" in text('#workers tr[data-worker="w0@test"]'))
    wait(lambda: text("#count-succeeded").startswith("3") and text("#count-failed").startswith("1"))
    assert text(f'#tasks tr[data-task-id="{failed.id}"] button.retry') == "Retry"
    assert "boom" in text("#failures")
    wait(lambda: text('#queues tr[data-queue="celery"]') == "celery 0")

    held = client.send_task("e2e.add", [7, 7], countdown=60)
    row = f'#tasks tr[data-task-id="{held.id}"]'
    wait(lambda: text(f"{row} .state") == "PENDING")  # Redis holds it until due
    browser.find_element(By.CSS_SELECTOR, f"{row} button.revoke").click()
    wait(lambda: text(f"{row} .state") == "REVOKED")
    assert client.AsyncResult(held.id).state == "REVOKED"
    browser.find_element(By.CSS_SELECTOR, f'{row} a[data-open="{held.id}"]').click()
    wait(lambda: "backend: REVOKED" in text("#detail") and "TaskRevoked" in text("#detail"))

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "dashboard.png")
    for path in (shot, ARTIFACTS / "dashboard.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
