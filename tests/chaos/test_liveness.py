"""Worker liveness: a broker connection that dies silently, a consumer loop that is stuck, a
result backend that becomes unreachable. Real `kq worker` processes, real servers, and a TCP
proxy (proxy.py) that cuts connections without a reset, as a NAT or a firewall does.

Each test sets small bounds (a few seconds) so that it proves the mechanism quickly; the
defaults and what they mean are in docs/reliability.md, "Silent connection loss and the
watchdog". Each takes 5-16 s (about 80 s in all).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from kq import App
from kq.testing.servers import delete_amqp_queues, hold, require
from kq.testing.worker import WorkerProcess
from kq.worker.watchdog import EXIT_CODE
from kq.worker.worker import RECONNECT_MAX

from .harness import APPS, Ledger, wait_until
from .proxy import Proxy

pytestmark = [pytest.mark.slow, pytest.mark.serial]

#: The detection bound the tests configure (s): Redis's ``socket_timeout``; on RabbitMQ two
#: heartbeats of half of it.
BOUND = 3.0
#: Once the path is back, a worker is consuming again after at most the connection attempt under
#: way (bounded by BOUND) and the reconnection backoff (at most RECONNECT_MAX).
RESUME_WITHIN = 3 * BOUND + RECONNECT_MAX
BATCH = 20


# -- brokers behind the proxy ----------------------------------------------------------------


class Broker:
    """One real broker: its address, the options that set the bounds, and the URLs."""

    def __init__(
        self, name: str, address: tuple[str, int], options: dict[str, Any], settings: dict[str, Any]
    ) -> None:
        self.name, self.address, self.options, self.settings = name, address, options, settings

    def url(self, host: str, port: int) -> str:
        if self.name == "redis":
            return f"redis://{host}:{port}/15"
        return f"amqp://guest:guest@{host}:{port}//"

    def client(self, port: int | None = None) -> App:
        """A client app without results, straight to the broker or through the proxy at
        ``port`` (with the test's bounds)."""
        if port is None:
            url = self.url(*self.address)
            options = {k: v for k, v in self.options.items() if k == "global_keyprefix"}
        else:
            url, options = self.url("127.0.0.1", port), self.options
        return App(
            "client", broker_url=url, result_backend=None, broker_transport_options=options, **self.settings
        )


@pytest.fixture(params=["redis", "amqp"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Redis (database 15, a key prefix of the test's own, the server held shared) or RabbitMQ
    (a queue of the test's own), with the detection bound set to :data:`BOUND`."""
    token = uuid.uuid4().hex[:12]
    if request.param == "redis":
        prefix = f"kqtest-{token}:"
        with hold("redis") as address:
            yield Broker(
                "redis",
                address,
                {"global_keyprefix": prefix, "socket_timeout": BOUND, "socket_connect_timeout": BOUND},
                {},
            )
        client = redis.Redis(port=6379, db=15, socket_timeout=10)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        return
    address = require("rabbitmq")
    queue = f"kq-chaos-{token}"
    yield Broker(
        "amqp",
        address,
        {"heartbeat": BOUND / 2, "read_timeout": BOUND, "write_timeout": BOUND, "connect_timeout": BOUND},
        {"task_default_queue": queue},
    )
    delete_amqp_queues(queue, host=address[0], port=address[1])


def worker_env(
    broker_url: str, options: dict[str, Any], settings: dict[str, Any], ledger: Ledger | None, **more: str
) -> dict[str, str]:
    env = {
        "KQ_BROKER_URL": broker_url,
        "KQ_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
        "KQ_RESULT_BACKEND": "none",
        "PYTHONPATH": str(APPS),
        **more,
    }
    env.update({f"KQ_{name.upper()}": value for name, value in settings.items()})
    return {**env, **(ledger.env() if ledger is not None else {})}


def start_worker(tmp_path: Path, env: dict[str, str], *args: str) -> WorkerProcess:
    return WorkerProcess(
        "liveness_app:app",
        ["-l", "info", "-P", "threads", "-c", "2", *args],
        env=env,
        cwd=str(APPS),
        log_path=str(tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"),
    ).start()


def publish(client: App, task: str, count: int) -> list[str]:
    return [client.send_task(task).id for _ in range(count)]


def records(count: int) -> list[SimpleNamespace]:
    """``count`` calls of ``chaos.record`` for ``App.send_many``."""
    return [SimpleNamespace(task="chaos.record", args=[], kwargs={}, options={})] * count


# -- silent connection death -----------------------------------------------------------------


def test_worker_notices_a_silent_broker_connection_and_resumes(broker, ledger, tmp_path):
    """The path to the broker goes silent (no RST, no FIN) while the worker waits for work,
    and tasks are published at once, while the worker still waits on the dead connection: the
    broker may answer its wait into that connection, which must not take a message with it.
    The worker gives the dead connection up within the bound, and once the path is back it is
    consuming again within RESUME_WITHIN; nothing is lost."""
    client = broker.client()
    with Proxy(broker.address) as proxy:
        worker = start_worker(
            tmp_path, worker_env(broker.url("127.0.0.1", proxy.port), broker.options, broker.settings, ledger)
        )
        try:
            sent = publish(client, "chaos.record", BATCH)
            wait_until(lambda: ledger.distinct() == BATCH, 30, "the first batch ran")

            cut_at = time.monotonic()
            proxy.cut(blackhole_new=True)  # a lasting outage: new connections go nowhere either
            sent += publish(client, "chaos.record", BATCH)  # into the worker's dead wait
            wait_until(
                lambda: "broker connection lost" in worker.output(),
                3 * BOUND,
                "the worker gave the silent connection up",
            )
            detected = time.monotonic() - cut_at

            restored_at = time.monotonic()
            proxy.restore()
            wait_until(
                lambda: ledger.distinct() == 2 * BATCH,
                RESUME_WITHIN,
                "the worker resumed and ran what was published during the outage",
            )
            resumed = time.monotonic() - restored_at
            assert worker.stop() == 0
        finally:
            worker.__exit__(None, None, None)
            client.close()
    runs = ledger.runs()
    assert {run.task_id for run in runs} == set(sent)
    repeats = len(runs) - len(sent)
    print(
        f"{broker.name}: silent cut noticed after {detected:.1f} s (bound {BOUND:g} s), "
        f"consuming again {resumed:.1f} s after the path came back, {repeats} repeats"
    )
    # Repeats can only be acks_late tasks of the first batch whose ack was still to go out on
    # the connection that died; RabbitMQ redelivers those, Redis keeps the lease.
    assert repeats <= BATCH


def test_a_publish_over_a_silent_connection_fails_over_within_the_bound(broker):
    """A client's connection goes silent between two publishes (the path changed: new
    connections work). The next publish does not hang: it times out within the bound and the
    client's retry publishes it on a new connection."""
    direct = broker.client()
    queue = direct.conf.task_default_queue
    inspect = direct.new_transport()
    with Proxy(broker.address) as proxy:
        client = broker.client(proxy.port)
        try:
            client.send_task("chaos.record")
            client.send_many(records(3))
            connections = proxy.accepted
            assert proxy.cut() >= 1
            started = time.monotonic()
            client.send_task("chaos.record")
            single = time.monotonic() - started
            proxy.cut()
            started = time.monotonic()
            client.send_many(records(3))
            batch = time.monotonic() - started
        finally:
            client.close()
    try:
        assert single < 3 * BOUND and batch < 3 * BOUND, (single, batch)
        assert proxy.accepted >= connections + 2  # each went out on a new connection
        wait_until(lambda: inspect.depth(queue) == 8, 10, "all 8 messages are in the queue")
    finally:
        inspect.purge(queue)
        inspect.close()
        direct.close()


def test_a_warm_shutdown_during_a_broker_outage_leaves_finished_acks_to_their_lease(tmp_path):
    """Redis goes silent while an acks_late task runs, and the worker is told to stop before it
    is back: the worker lets the task finish, cannot ack it (it says so) and exits cleanly, with
    no connection left to ack on; the message keeps its lease in Redis and, once the lease
    expires, another worker runs it again. Nothing is lost and the stop does not crash."""
    visibility = 8
    with hold("redis") as address, Proxy(address) as proxy:
        broker = Broker(
            "redis",
            address,
            {
                "global_keyprefix": f"kqtest-{uuid.uuid4().hex[:12]}:",
                "socket_timeout": BOUND,
                "socket_connect_timeout": BOUND,
                "visibility_timeout": visibility,
            },
            {},
        )
        client = broker.client()
        started = tmp_path / "started"
        worker = start_worker(
            tmp_path, worker_env(broker.url("127.0.0.1", proxy.port), broker.options, {}, None)
        )
        survivor = None
        try:
            client.send_task("liveness.sleep", [3 * BOUND, str(started)])
            wait_until(started.exists, 30, "the task started")
            started.unlink()
            proxy.cut(blackhole_new=True)
            wait_until(lambda: "broker connection lost" in worker.output(), 3 * BOUND, "the loss was noticed")
            code = worker.stop(timeout=10 * BOUND)
            log = worker.output()
            assert code == 0, log
            assert "could not ack finished tasks" in log and "Traceback" not in log, log
            proxy.restore()
            survivor = start_worker(tmp_path, worker_env(broker.url(*address), broker.options, {}, None))
            wait_until(started.exists, visibility + 30, "the unacked task ran again once its lease expired")
            assert survivor.stop(timeout=10 * BOUND) == 0
        finally:
            worker.__exit__(None, None, None)
            if survivor is not None:
                survivor.__exit__(None, None, None)
            client.close()
            keys = redis.Redis(port=6379, db=15).keys(f"{broker.options['global_keyprefix']}*")
            if keys:
                redis.Redis(port=6379, db=15).delete(*keys)


# -- the watchdog ----------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kq.sqlite3'}"


def test_watchdog_ends_a_worker_whose_loop_is_stuck(sqlite_url, tmp_path):
    """A hook that never returns, on the loop's own thread: the worker logs where the loop is
    stuck and exits with the watchdog's code within the limit (plus the check interval)."""
    limit = 3.0
    env = worker_env(
        sqlite_url, {}, {"worker_watchdog_timeout": str(limit)}, None, KQ_RESULT_BACKEND=sqlite_url
    )
    client = App("client", broker_url=sqlite_url, result_backend=sqlite_url)
    worker = start_worker(tmp_path, env)
    try:
        assert client.send_task("liveness.sleep", [0.1]).get(timeout=30) == 0.1
        wedged_at = time.monotonic()
        client.send_task("liveness.wedge")
        code = worker.wait(timeout=5 * limit)
        took = time.monotonic() - wedged_at
    finally:
        worker.__exit__(None, None, None)
        client.close()
    log = worker.output()
    assert code == EXIT_CODE, log
    assert "the consumer loop has not stepped" in log and "worker_watchdog_timeout=3" in log
    assert "in wedge" in log  # the stuck thread's stack names the hook it is stuck in
    assert limit < took < limit + 5, took


def test_watchdog_spares_an_idle_worker_and_a_long_task_on_the_loop_thread(sqlite_url, tmp_path):
    """A worker waiting on an empty queue steps every second; the solo pool runs a task on the
    loop's thread, which is no stuck loop either: neither trips a watchdog of 2 s."""
    limit = 2.0
    env = worker_env(
        sqlite_url, {}, {"worker_watchdog_timeout": str(limit)}, None, KQ_RESULT_BACKEND=sqlite_url
    )
    client = App("client", broker_url=sqlite_url, result_backend=sqlite_url)
    worker = WorkerProcess(
        "liveness_app:app",
        ["-l", "info", "-P", "solo"],
        env=env,
        cwd=str(APPS),
        log_path=str(tmp_path / "solo.log"),
    ).start()
    try:
        time.sleep(3 * limit)  # idle: nothing to run for three watchdog limits
        assert worker.process.poll() is None, worker.output()
        assert client.send_task("liveness.sleep", [3 * limit]).get(timeout=60) == 3 * limit
        assert client.send_task("liveness.sleep", [0]).get(timeout=30) == 0
        assert worker.stop() == 0, worker.output()
    finally:
        worker.__exit__(None, None, None)
        client.close()
    assert "has not stepped" not in worker.output()


# -- the result backend goes away ------------------------------------------------------------


def test_acks_late_tasks_outlive_a_silent_result_backend(ledger, sqlite_url, tmp_path):
    """The result backend (Redis, behind the proxy) goes silent mid-run. acks_late tasks that
    cannot store their result within result_store_timeout go back to the queue and run again;
    once the backend is back every task has its result, none is lost."""
    store_timeout = 2.0
    with hold("redis") as address, Proxy(address) as proxy:
        prefix = f"kqtest-{uuid.uuid4().hex[:12]}:"
        backend_options = {"global_keyprefix": prefix, "socket_timeout": 1, "socket_connect_timeout": 1}
        env = worker_env(
            sqlite_url,
            {},
            {"result_store_timeout": str(store_timeout)},
            ledger,
            KQ_RESULT_BACKEND=f"redis://127.0.0.1:{proxy.port}/15",
            KQ_RESULT_BACKEND_OPTIONS=json.dumps(backend_options),
        )
        client = App(
            "client",
            broker_url=sqlite_url,
            result_backend=f"redis://{address[0]}:{address[1]}/15",
            result_backend_options={"global_keyprefix": prefix},
        )
        worker = start_worker(tmp_path, env)
        try:
            first = [client.send_task("liveness.record") for _ in range(4)]
            assert [r.get(timeout=30) for r in first] == [r.id for r in first]

            proxy.cut(blackhole_new=True)
            during = [client.send_task("liveness.record") for _ in range(4)]
            # Each ran, could not store its result, went back and ran again.
            wait_until(
                lambda: all(ledger_count(ledger, r.id) >= 2 for r in during),
                60,
                "the tasks of the outage ran again after their result could not be stored",
            )
            proxy.restore()
            assert [r.get(timeout=60) for r in during] == [r.id for r in during]
            assert worker.stop() == 0
        finally:
            worker.__exit__(None, None, None)
            client.close()
            keys = redis.Redis(port=6379, db=15).keys(f"{prefix}*")
            if keys:
                redis.Redis(port=6379, db=15).delete(*keys)
    assert "could not store the result of task" in worker.output()
    assert {run.task_id for run in ledger.runs()} == {r.id for r in first + during}


def ledger_count(ledger: Ledger, task_id: str) -> int:
    return sum(1 for run in ledger.runs() if run.task_id == task_id)


def test_heartbeats_keep_a_busy_worker_connected(sqlite_url, tmp_path):
    """A worker whose prefetch window is full does not fetch, and one finishing its tasks on a
    warm shutdown does not either; its loop still keeps the AMQP heartbeats going, so an
    acks_late task longer than two heartbeats neither loses the connection nor runs twice."""
    address = require("rabbitmq")
    queue = f"kq-chaos-{uuid.uuid4().hex[:12]}"
    url = f"amqp://guest:guest@{address[0]}:{address[1]}//"
    env = worker_env(url, {"heartbeat": 1}, {"task_default_queue": queue}, None, KQ_RESULT_BACKEND=sqlite_url)
    client = App("client", broker_url=url, result_backend=sqlite_url, task_default_queue=queue)
    worker = start_worker(tmp_path, env, "-c", "1", "--prefetch-multiplier", "0")
    started = tmp_path / "started"
    try:
        assert client.send_task("liveness.sleep", [5]).get(timeout=30) == 5  # five heartbeats
        last = client.send_task("liveness.sleep", [5], kwargs={"started": str(started)})
        wait_until(started.exists, 30, "the last task started")
        worker.signal(signal.SIGTERM)  # a warm shutdown lets it finish and acks it
        assert worker.wait(30) == 0
        assert last.get(timeout=10) == 5
        transport = client.new_transport()
        try:
            assert transport.depth(queue) == 0  # acked: not back in the queue to run again
        finally:
            transport.purge(queue)
            transport.close()
    finally:
        worker.__exit__(None, None, None)
        client.close()
    log = worker.output()
    assert "connection lost" not in log and "2 succeeded" in log, log
