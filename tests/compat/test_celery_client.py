"""A Celery client publishes, a real ``kq worker`` runs, Celery's ``AsyncResult.get()`` reads
the result: on Redis and on RabbitMQ, with results in Redis (Celery's ``celery-task-meta-<id>``)."""

from datetime import datetime, timedelta, timezone

import pytest
from celery import chain, group
from celery.exceptions import TaskRevokedError

pytestmark = pytest.mark.slow
TIMEOUT = 30


@pytest.fixture(autouse=True)
def _worker(kq_worker):
    """Every test here needs the module's kq worker."""


def test_value_reaches_celery_get(celery_app):
    result = celery_app.tasks["compat.add"].apply_async((1, 2))
    assert result.get(timeout=TIMEOUT) == 3
    assert result.state == "SUCCESS"


def test_send_task_by_name(celery_app):
    assert celery_app.send_task("compat.mul", (6, 7)).get(timeout=TIMEOUT) == 42


def test_failure_reaches_celery_get_as_the_exception(celery_app):
    result = celery_app.tasks["compat.fail"].delay("boom")
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"
    assert "ValueError" in result.traceback


def test_chain_of_three(celery_app):
    add, mul = celery_app.tasks["compat.add"], celery_app.tasks["compat.mul"]
    result = chain(add.s(1, 2), add.s(3), mul.s(2)).apply_async()
    assert result.get(timeout=TIMEOUT) == 12
    assert result.parent.get(timeout=TIMEOUT) == 6
    assert result.parent.parent.get(timeout=TIMEOUT) == 3


def test_group_of_ten(celery_app):
    add = celery_app.tasks["compat.add"]
    result = group(add.s(n, n) for n in range(10)).apply_async()
    assert result.get(timeout=TIMEOUT) == [2 * n for n in range(10)]
    assert result.successful()


def test_eta_is_honoured(celery_app):
    eta = datetime.now(timezone.utc) + timedelta(seconds=1)
    result = celery_app.tasks["compat.add"].apply_async((5, 5), eta=eta)
    assert result.get(timeout=TIMEOUT) == 10
    assert result.date_done >= eta


def test_countdown_is_honoured(celery_app):
    earliest = datetime.now(timezone.utc) + timedelta(seconds=1)
    result = celery_app.tasks["compat.add"].apply_async((2, 2), countdown=1)
    assert result.get(timeout=TIMEOUT) == 4
    assert result.date_done >= earliest


def test_expired_task_is_revoked_not_run(celery_app):
    expired = datetime.now(timezone.utc) - timedelta(seconds=1)
    result = celery_app.tasks["compat.add"].apply_async((1, 1), expires=expired)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"


def test_time_limits_are_accepted(celery_app):
    """Celery sends ``timelimit`` as ``[hard, soft]``; kq takes it and runs the task."""
    result = celery_app.tasks["compat.add"].apply_async((3, 4), time_limit=30, soft_time_limit=20)
    assert result.get(timeout=TIMEOUT) == 7
