"""Rate limits on real `kq worker` processes: a per-worker limit on one worker, and a global limit
shared by two workers through the result backend's counters, on Redis and on the embedded SQLite
default. Each task writes its start time to the ledger; the tests read the spacing from there.

Run with ``-s`` to see the timings (printed; only generous lower bounds are asserted).
"""

import bisect
import re
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
APP = "rate_app:app"
#: How much later than its turn a task may be seen to start (the worker waking up, the hand-over
#: to a pool thread, a busy test machine): windows are measured this much shorter.
JITTER = 0.05
ON_REDIS = pytest.mark.parametrize("broker_settings", ["redis"], indirect=True)


@pytest.fixture
def broker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Redis as broker and result backend, under the test's key prefix, for tests marked
    ``ON_REDIS``; the test's SQLite file otherwise."""
    if getattr(request, "param", None) != "redis":
        return {}
    redis = request.getfixturevalue("redis_broker")
    return {
        **redis,
        "result_backend": redis["broker_url"],
        "result_backend_options": redis["broker_transport_options"],
    }


def starts(ran, task: str) -> list[tuple[float, int]]:
    """``(start time, worker pid)`` of every run of ``rate.<task>``, earliest first."""
    return sorted((float(at), int(pid)) for at, pid in (line.split() for line in ran(task)))


def busiest_window(times: list[float], period: float) -> int:
    """The most starts in any window ``period`` long (less :data:`JITTER`)."""
    return max(bisect.bisect_left(times, at + period - JITTER) - i for i, at in enumerate(times))


@ON_REDIS
def test_per_worker_limit_spaces_starts_and_lets_other_tasks_by(client, start_worker, ran):
    start_worker("-P", "threads", "-c", "10", app=APP)  # prefetch room for all 41 messages
    limited = [client.send_task("rate.local", [n]) for n in range(40)]  # rate_limit="20/s"
    free = client.send_task("rate.free")
    free.get(timeout=10)
    assert [result.get(timeout=30) for result in limited] == list(range(40))
    times = [at for at, _ in starts(ran, "local")]
    ((free_start, _),) = starts(ran, "free")
    took = times[-1] - times[0]
    print(
        f"\n40 tasks at rate_limit=20/s on one worker: {took:.2f} s; the unlimited task "
        f"started {free_start - times[0]:.2f} s after the first of them"
    )
    assert took >= 1.5
    assert busiest_window(times, 1.0) <= 20
    # It did not queue behind the held ones: it ran before the last ten of them started.
    assert free_start < times[-10]


@ON_REDIS
def test_global_limit_is_shared_by_two_workers_on_redis(client, start_worker, ran):
    for _ in range(2):
        start_worker("-P", "threads", "-c", "4", app=APP)
    sent = [client.send_task("rate.global10", [n]) for n in range(100)]  # global_rate_limit="10/s"
    assert [result.get(timeout=60) for result in sent] == list(range(100))
    runs = starts(ran, "global10")
    times = [at for at, _ in runs]
    took = times[-1] - times[0]
    print(
        f"\n100 tasks at global_rate_limit=10/s on two workers (Redis): {took:.2f} s, "
        f"busiest second {busiest_window(times, 1.0)} starts"
    )
    assert took >= 9.0
    assert busiest_window(times, 1.0) <= 10
    assert len({pid for _, pid in runs}) == 2  # both workers took turns


def test_held_tasks_go_back_to_the_broker_on_shutdown(client, start_worker, ran):
    first = start_worker("-P", "threads", "-c", "10", app=APP)
    sent = [client.send_task("rate.local", [n]) for n in range(40)]  # 2 s of turns at 20/s
    deadline = time.monotonic() + 30
    while len(ran("local")) < 5:
        assert time.monotonic() < deadline, first.output()
        time.sleep(0.05)
    assert first.stop() == 0, first.output()
    returned = int(re.search(r"(\d+) reserved returned to the broker", first.output())[1])
    assert returned > 0 and returned + len(ran("local")) >= 40, first.output()
    start_worker("-P", "threads", "-c", "10", app=APP)
    assert [result.get(timeout=30) for result in sent] == list(range(40))


def test_global_limit_on_the_embedded_sqlite_default(client, start_worker, ran):
    for _ in range(2):
        start_worker("-P", "threads", "-c", "4", app=APP)
    sent = [client.send_task("rate.global5", [n]) for n in range(20)]  # global_rate_limit="5/s"
    assert [result.get(timeout=60) for result in sent] == list(range(20))
    times = [at for at, _ in starts(ran, "global5")]
    took = times[-1] - times[0]
    print(
        f"\n20 tasks at global_rate_limit=5/s on two workers (SQLite): {took:.2f} s, "
        f"busiest second {busiest_window(times, 1.0)} starts"
    )
    assert took >= 3.4  # 19 intervals of 0.2 s
    assert busiest_window(times, 1.0) <= 5
