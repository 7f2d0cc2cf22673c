"""Progress from inside a task on a real `kq worker` process, Redis as broker and result
backend: a client polling ``.info`` sees it grow, and ``kq result ID --follow`` draws it.
"""

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from kq.states import SUCCESS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
APP = "retry_app:app"


@pytest.fixture
def broker_settings(redis_broker: dict[str, Any]) -> dict[str, Any]:
    """Redis as broker and result backend, under the test's key prefix."""
    return {
        **redis_broker,
        "result_backend": redis_broker["broker_url"],
        "result_backend_options": redis_broker["broker_transport_options"],
    }


def test_a_polling_client_sees_progress_grow_before_success(client, start_worker):
    start_worker("-P", "threads", "-c", "2", app=APP)
    result = client.send_task("retry.progress", [100, 0.02])
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while not result.ready():
        assert time.monotonic() < deadline, f"still {result.state}"
        info = result.info
        if result.state == "PROGRESS" and isinstance(info, dict) and info["current"] < 100:
            assert info["total"] == 100
            seen.append(info["current"])
        time.sleep(0.01)
    assert result.state == SUCCESS and result.get(timeout=1) == 100
    assert len(set(seen)) >= 10, seen
    assert seen == sorted(seen), "progress went backwards"


def kq_result(task_id: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kq", "result", task_id, *flags],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_kq_result_follow_draws_progress_and_exits_by_outcome(client, start_worker, env):
    start_worker("-P", "threads", "-c", "2", app=APP)
    done = kq_result(client.send_task("retry.progress", [20, 0.1]).id, env, "--follow", "--interval", "0.05")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    bars = [line for line in lines if line.startswith("PROGRESS [")]
    assert len(bars) >= 5, done.stdout
    shown = [int(bar.rsplit(" ", 1)[1].split("/")[0]) for bar in bars]
    assert shown == sorted(shown) and shown[-1] >= 15, done.stdout
    assert bars[-1].endswith(f"{shown[-1]}/20") and "#" in bars[-1]
    assert lines[-1] == "SUCCESS: 20"

    failed = kq_result(client.send_task("retry.add", [1]).id, env, "--follow")
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[-1].startswith("FAILURE: TypeError")
