"""Real ``kq worker -P gevent`` / ``-P eventlet`` processes on a SQLite file: patching before
the app, a thousand waiting tasks at once, ``kq.current_task`` per greenlet, time limits.
Eventlet runs only where kq-eventlet is installed."""

import functools
import time

import pytest

from kq.exceptions import TimeLimitExceeded
from kq.plugins import get_plugins

pytestmark = pytest.mark.slow


@pytest.fixture(params=["gevent", "eventlet"])
def pool(request: pytest.FixtureRequest) -> str:
    if request.param not in get_plugins().pools:
        pytest.skip(f"kq-{request.param} is not installed")
    return request.param


@pytest.fixture
def start_green(start_worker, pool):
    """``start_worker`` for ``kq worker -A green_app:app -P <pool> ARGS...``."""
    return functools.partial(start_worker, "-P", pool, app="green_app:app", name=pool)


def test_the_pool_patches_before_the_app_is_imported(client, start_green, pool):
    worker = start_green("-c", "4")
    assert client.send_task("green.patched_at_import").get(timeout=30)[pool] is True
    assert worker.stop() == 0


def test_a_thousand_sleeping_tasks_take_seconds_not_minutes(client, start_green, pool):
    worker = start_green("-c", "500")
    begin = time.monotonic()
    sent = [client.send_task("green.nap", [0.5, n]) for n in range(1000)]
    published = time.monotonic() - begin
    values = [result.get(timeout=120) for result in sent]
    elapsed = time.monotonic() - begin
    print(
        f"\n{pool}: 1,000 tasks of time.sleep(0.5) at -c 500: published in {published:.1f} s, "
        f"all results in {elapsed:.1f} s"
    )
    assert values == list(range(1000))
    assert elapsed < 60, f"{elapsed:.0f} s: the tasks did not wait concurrently"
    assert worker.stop() == 0


def test_current_task_is_each_greenlets_own(client, start_green):
    worker = start_green("-c", "50")
    sent = [client.send_task("green.whoami", [0.2]) for _ in range(100)]
    assert [result.get(timeout=60) for result in sent] == [True] * 100
    assert worker.stop() == 0


@pytest.mark.parametrize("task", ["green.nap", "green.spin"], ids=["waiting", "computing"])
def test_a_hard_time_limit_fails_the_task_and_the_worker_goes_on(client, start_green, pool, task):
    if not get_plugins().pools.get(pool).capabilities.hard_time_limit:
        pytest.skip(f"the {pool} pool does not enforce hard time limits")
    worker = start_green("-c", "4")
    begin = time.monotonic()
    overrun = client.send_task(task, [10, 1] if task == "green.nap" else [10], time_limit=1)
    with pytest.raises(TimeLimitExceeded, match="hard time limit"):
        overrun.get(timeout=30)
    assert time.monotonic() - begin < 9, "the task was not stopped at its limit"
    assert overrun.state == "FAILURE"
    assert client.send_task("green.nap", [0.1, 2]).get(timeout=30) == 2
    assert worker.process.poll() is None
    assert worker.stop() == 0


def test_a_soft_time_limit_is_raised_inside_the_task(client, start_green):
    worker = start_green("-c", "4")
    begin = time.monotonic()
    caught = client.send_task("green.soft", [10], soft_time_limit=0.5, time_limit=5)
    assert caught.get(timeout=30) == "caught SoftTimeLimitExceeded"
    assert time.monotonic() - begin < 4
    assert worker.stop() == 0
