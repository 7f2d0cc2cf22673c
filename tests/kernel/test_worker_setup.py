"""What the worker checks and decides before it consumes anything."""

import logging

import pytest

from kq import App
from kq.config import Settings
from kq.exceptions import ConfigurationError, TimeLimitExceeded, WorkerLostError
from kq.execution import Runner
from kq.pool import Job
from kq.protocol import TaskMessage
from kq.worker import Worker


@pytest.fixture
def app():
    return App("setup", broker="memory://", backend="memory://")


def test_per_child_limits_need_a_pool_that_has_them(app):
    app.configure(worker_max_tasks_per_child=5)
    with pytest.raises(ConfigurationError) as info:
        Worker(app, pool="solo")
    assert "worker_max_tasks_per_child" in str(info.value) and "solo" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("8,2", (8, 2)), ("4", (4, 1)), ((3, 3), (3, 3)), (None, None)]
)
def test_autoscale_values(value, expected):
    assert Settings(worker_autoscale=value).worker_autoscale == expected


@pytest.mark.parametrize("value", ["2,8", "0", "a,b", "1,2,3"])
def test_bad_autoscale_values(value):
    with pytest.raises(ConfigurationError, match="worker_autoscale"):
        Settings(worker_autoscale=value)


def test_time_limits_resolve_message_then_task_then_settings(app, caplog):
    app.configure(task_time_limit=30)

    @app.task(soft_time_limit=5)
    def limited():
        pass

    worker = Worker(app, pool="solo")
    plain = TaskMessage(id="1", task=limited.name)
    override = TaskMessage(id="2", task=limited.name, timelimit=(9, 3))
    with caplog.at_level(logging.WARNING, logger="kq.worker"):
        first = worker._job(plain, _delivery(), 1)
        second = worker._job(override, _delivery(), 2)
        worker._job(plain, _delivery(), 3)
    assert (first.time_limit, first.soft_time_limit) == (30, 5)
    assert (second.time_limit, second.soft_time_limit) == (9, 3)
    # solo can enforce neither; each is said once, not per message.
    assert caplog.text.count("cannot enforce time_limit") == 1
    assert caplog.text.count("cannot enforce soft_time_limit") == 1


def _delivery():
    from kq.transport import Delivery, Envelope

    return Delivery(Envelope(body=b"", content_type="application/json"), "q", tag=None)


def test_lost_job_fails_or_requeues_by_policy(app):
    @app.task(acks_late=True, reject_on_worker_lost=True)
    def idempotent():
        pass

    @app.task(acks_late=True)
    def plain():
        pass

    runner = Runner(app, "test@host")
    requeued = runner.lost(Job(TaskMessage(id="a", task=idempotent.name), "q"), WorkerLostError("x"))
    assert requeued.requeue
    failed = runner.lost(Job(TaskMessage(id="b", task=plain.name), "q"), WorkerLostError("gone"))
    assert not failed.requeue and failed.state == "FAILURE"
    with pytest.raises(WorkerLostError, match="gone"):
        app.AsyncResult("b").get(timeout=5)
    # A second hard time limit on a redelivered job fails it, so a task cannot loop forever.
    again = runner.lost(
        Job(TaskMessage(id="c", task=idempotent.name), "q", redelivered=True), TimeLimitExceeded("2 s")
    )
    assert not again.requeue


def test_pool_context_refuses_concurrency_below_one():
    from kq.pool import PoolContext

    with pytest.raises(ConfigurationError, match="worker_concurrency must be at least 1"):
        PoolContext(concurrency=0, runner=lambda job: None)
