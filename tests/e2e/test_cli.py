"""The `kq` command line, run as users run it: a real process, real output, real exit codes."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def kq(*args, env=None, input=None, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "kq", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        cwd=cwd,
        timeout=timeout,
    )


def test_plugins_json_lists_the_default_plugins():
    done = kq("plugins", "--json")
    assert done.returncode == 0, done.stderr
    listed = {p["distribution"]: p for p in json.loads(done.stdout)["plugins"]}
    for dist, hook in [
        ("kq-sqlite", "kq_transports"),
        ("kq-memory", "kq_transports"),
        ("kq-solo", "kq_pools"),
        ("kq-threads", "kq_pools"),
    ]:
        assert dist in listed, listed.keys()
        assert listed[dist]["version"] == "0.1.0"
        assert hook in listed[dist]["hooks"]
    assert listed["kq-sqlite"]["provides"]["transports"] == ["sqlite"]
    assert listed["kq-sqlite"]["provides"]["result_backends"] == ["sqlite"]
    assert "kq" not in listed  # built-ins only with --all
    every = json.loads(kq("plugins", "--all", "--json").stdout)["plugins"]
    assert "json" in next(p for p in every if p["name"] == "builtins")["provides"]["serializers"]


def test_plugins_table_and_hook_filter():
    done = kq("plugins", "--hook", "kq_pools")
    assert done.returncode == 0
    assert "kq-threads" in done.stdout and "kq-solo" in done.stdout
    assert "kq-sqlite" not in done.stdout


def test_missing_transport_plugin_is_one_clear_line(tmp_path):
    # Disabling kq-redis (if installed) makes this true whatever else is installed.
    done = kq(
        "worker", "-b", "redis://127.0.0.1:6379/0", env={"KQ_DISABLE_PLUGINS": "kq-redis"}, cwd=tmp_path
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "transport 'redis'" in lines[0] and "sqlite (kq-sqlite)" in lines[0]
    assert "pip install kq-redis" in lines[0]


def test_unknown_pool_is_one_clear_line(tmp_path):
    done = kq("worker", "--pool=nosuch", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pool 'nosuch'" in lines[0] and "threads (kq-threads)" in lines[0]


def test_call_result_and_purge(tmp_path, env, start_worker):
    url = env["KQ_BROKER_URL"]
    sent = kq("call", "e2e.add", "--args", "[1, 2]", env=env)
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()
    assert kq("result", task_id, env=env).stdout.strip() == "PENDING"
    for n in range(3):
        kq("call", "e2e.add", "--args", f"[{n}, {n}]", env=env)
    refused = kq("purge", "-Q", "celery", env=env, input="n\n")
    assert refused.returncode == 1 and "Delete 4 message(s)" in refused.stdout
    purged = kq("purge", "-Q", "celery", "-f", env=env)
    assert "Purged 4 message(s)" in purged.stdout
    worker = start_worker("-P", "solo")
    waited = kq("call", "e2e.add", "-a", "[40, 2]", "--wait", "--timeout", "30", env=env)
    assert waited.stdout.splitlines()[-1] == "SUCCESS: 42", waited.stderr
    assert kq("result", task_id, env=env).stdout.strip() == "PENDING"  # it was purged
    failed = kq("call", "e2e.fail", "-a", '["nope"]', "--wait", env=env)
    failed_id = failed.stdout.splitlines()[0]
    shown = kq("result", failed_id, "--traceback", env=env).stdout
    assert "FAILURE: ValueError('nope')" in shown and "Traceback" in shown
    bad = kq("call", "e2e.add", "--args", "{not json", env=env)
    assert bad.returncode == 2 and "--args" in bad.stderr
    assert worker.stop() == 0
    assert url.startswith("sqlite:///")


def test_demo_runs_a_real_worker_and_shows_results(tmp_path):
    done = kq("demo", "--tasks", "300", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "300 of 300 results correct" in out
    assert "Worker is up (pid" in out and "tasks/s" in out
    assert "Worker stopped (exit code 0)" in out
    pids = out.split("Worker is up (pid ")[1].split(";")[0], out.split("this process is pid ")[1]
    assert pids[0] != pids[1].split(")")[0]


def test_help_explains_every_command():
    for command in ("worker", "call", "result", "purge", "plugins", "demo"):
        done = kq(command, "--help")
        assert done.returncode == 0 and "Usage: kq " + command in done.stdout
