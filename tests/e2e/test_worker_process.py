"""Real `kq worker` processes on one SQLite file: results, exactly-once, bad bytes, SIGTERM."""

import signal
import time
from types import SimpleNamespace

import pytest

from kq.transport import Envelope

pytestmark = pytest.mark.slow


def test_results_and_failures_cross_processes(client, start_worker):
    start_worker("-P", "threads", "-c", "2")
    assert client.send_task("e2e.add", [2, 3]).get(timeout=30) == 5
    failed = client.send_task("e2e.fail", ["broken on purpose"])
    with pytest.raises(ValueError, match="broken on purpose"):
        failed.get(timeout=30)
    assert failed.state == "FAILURE" and "ValueError" in failed.traceback


def test_two_workers_drain_10000_tasks_exactly_once(client, start_worker, ledger, ran):
    total = 10_000
    sent = [client.send_task("e2e.double", [n]) for n in range(total // 2)]
    sent += client.send_many(
        SimpleNamespace(task="e2e.double", args=[n], kwargs={}, options={}) for n in range(total // 2, total)
    )
    first = start_worker("-P", "threads", "-c", "4")
    second = start_worker("-P", "threads", "-c", "4")
    values = [result.get(timeout=300) for result in sent]
    assert values == [2 * n for n in range(total)]
    assert first.stop() == 0 and second.stop() == 0
    ids = ran("ran")
    assert len(ids) == total, f"{len(ids) - len(set(ids))} duplicate runs"
    assert set(ids) == {r.id for r in sent}
    # Both processes took part; the file was really shared.
    assert len(list(ledger.glob("ran-*.log"))) == 2


def test_bad_messages_are_rejected_and_the_worker_goes_on(client, start_worker, tmp_path):
    worker = start_worker("-P", "threads", "-c", "2")
    transport = client.new_transport()
    pwned = tmp_path / "pwned"
    good_headers = {"lang": "py", "task": "e2e.add", "id": "will-be-replaced"}
    bad = {
        "bad-json": Envelope(
            body=b"[[1, 2], {}, {",
            content_type="application/json",
            headers={**good_headers, "id": "bad-json"},
        ),
        "unknown-task": Envelope(
            body=b"[[], {}, {}]",
            content_type="application/json",
            headers={**good_headers, "task": "no.such.task", "id": "unknown-task"},
        ),
        # A real pickle stream that would run os.system if it were ever loaded.
        "pickled": Envelope(
            body=b"cos\nsystem\n(S'touch " + str(pwned).encode() + b"'\ntR.",
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={**good_headers, "id": "pickled"},
        ),
    }
    try:
        for envelope in bad.values():
            transport.publish("celery", envelope)
        assert client.send_task("e2e.add", [20, 22]).get(timeout=30) == 42
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and worker.output().count("rejected message") < 3:
            time.sleep(0.1)
        log = worker.output()
        for task_id in bad:
            assert f"rejected message {task_id}" in log
        assert "decode" in log and "unknown-task" in log and "content-type" in log
        assert worker.process.poll() is None
        # Each refused message was dead-lettered, none was run.
        dead = transport.fetch(["celery.dlq"], 10, 2.0)
        assert sorted(d.envelope.headers["id"] for d in dead) == sorted(bad)
        transport.ack(dead)
        assert client.AsyncResult("pickled").state == "PENDING"
        assert not pwned.exists()
    finally:
        transport.close()
    assert worker.stop() == 0


def test_sigterm_lets_running_acks_late_tasks_finish_and_returns_the_rest(client, start_worker, ran):
    worker = start_worker("-P", "threads", "-c", "4", "--prefetch-multiplier", "2")
    sent = [client.send_task("e2e.slow", [2.0]) for _ in range(10)]
    deadline = time.monotonic() + 30
    while len(ran("started")) < 4:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.output()
    started, finished = ran("started"), ran("finished")
    assert len(started) == 4 and sorted(finished) == sorted(started)
    done = {r.id for r in sent if r.state == "SUCCESS"}
    assert done == set(finished)
    # The six that never started went back to the queue, not lost and not run.
    transport = client.new_transport()
    try:
        assert transport.depth("celery") == 6
    finally:
        transport.close()
    start_worker("-P", "threads", "-c", "4")
    assert [r.get(timeout=60) for r in sent] == [2.0] * 10
    finished = ran("finished")
    assert len(finished) == 10 and len(set(finished)) == 10


def test_second_signal_exits_at_once_and_unacked_tasks_come_back(client, start_worker, ran, env):
    env["KQ_BROKER_TRANSPORT_OPTIONS"] = '{"visibility_timeout": 2}'
    worker = start_worker("-P", "threads", "-c", "4")
    sent = [client.send_task("e2e.slow", [30.0]) for _ in range(4)]
    deadline = time.monotonic() + 30
    while len(ran("started")) < 4:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    worker.signal(signal.SIGTERM)
    time.sleep(0.3)
    began = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 1
    assert time.monotonic() - began < 5
    assert ran("finished") == []
    assert "cold shutdown" in worker.output()
    # acks_late: nothing was acked, so after the visibility timeout another worker runs them.
    start_worker("-P", "threads", "-c", "4")
    deadline = time.monotonic() + 30
    while len(ran("started")) < 8:
        assert time.monotonic() < deadline, "unacked tasks were not redelivered"
        time.sleep(0.1)
    assert sorted(ran("started")[4:]) == sorted(ran("started")[:4]) == sorted(r.id for r in sent)


def test_soft_shutdown_timeout_abandons_and_requeues_long_acks_late_tasks(client, start_worker, ran):
    worker = start_worker("-P", "threads", "-c", "2", "--soft-shutdown-timeout", "1")
    sent = [client.send_task("e2e.slow", [60.0]) for _ in range(2)]
    deadline = time.monotonic() + 30
    while len(ran("started")) < 2:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
    began = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert time.monotonic() - began < 15
    assert "abandoning them" in worker.output()
    transport = client.new_transport()
    try:
        assert transport.depth("celery") == 2  # back in the queue at once, not after a timeout
    finally:
        transport.close()
    assert all(r.state == "PENDING" for r in sent)
