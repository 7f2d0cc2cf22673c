"""A kq client publishes, a real ``celery worker`` runs, kq's ``AsyncResult.get()`` reads the
result Celery stored: on Redis and on RabbitMQ, with results in Redis."""

from datetime import datetime, timedelta, timezone

import pytest

import kq
from kq.exceptions import TaskRevoked

pytestmark = pytest.mark.slow
TIMEOUT = 30


@pytest.fixture(autouse=True)
def _worker(celery_worker):
    """Every test here needs the module's Celery worker."""


def test_value_reaches_kq_get(kq_client):
    result = kq_client.send_task("compat.add", [1, 2])
    assert result.get(timeout=TIMEOUT) == 3
    assert result.state == "SUCCESS"


def test_failure_reaches_kq_get_as_the_exception(kq_client):
    result = kq_client.send_task("compat.fail", ["boom"])
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"


def test_chain_of_three(kq_client):
    steps = [("compat.add", (1, 2)), ("compat.add", (3,)), ("compat.mul", (2,))]
    result = kq.chain(kq.Signature(name, args, app=kq_client) for name, args in steps).apply_async()
    assert result.get(timeout=TIMEOUT) == 12


def test_group_of_ten(kq_client):
    result = kq.group(kq.Signature("compat.add", (n, n), app=kq_client) for n in range(10)).apply_async()
    assert result.get(timeout=TIMEOUT) == [2 * n for n in range(10)]


def test_countdown_is_honoured(kq_client):
    earliest = datetime.now(timezone.utc) + timedelta(seconds=1)
    result = kq_client.send_task("compat.add", [2, 2], countdown=1)
    assert result.get(timeout=TIMEOUT) == 4
    assert result.date_done >= earliest


def test_expired_task_is_revoked_not_run(kq_client):
    expired = datetime.now(timezone.utc) - timedelta(seconds=1)
    result = kq_client.send_task("compat.add", [1, 1], expires=expired)
    with pytest.raises(TaskRevoked):
        result.get(timeout=TIMEOUT)
    assert result.state == "REVOKED"
