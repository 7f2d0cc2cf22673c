"""Celery's ``rpc://`` result backend on RabbitMQ, both ways: each side's worker sends the
result back as a message to the client's reply queue, which the other side's client reads."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("setup", ["amqp"], indirect=True, scope="module")]
TIMEOUT = 30


@pytest.fixture(scope="module")
def result_backend() -> str:
    return "rpc"


def test_celery_client_reads_a_kq_workers_results(celery_app, kq_worker):
    assert celery_app.tasks["compat.add"].delay(1, 2).get(timeout=TIMEOUT) == 3
    with pytest.raises(ValueError, match="boom"):
        celery_app.tasks["compat.fail"].delay("boom").get(timeout=TIMEOUT)


def test_kq_client_reads_a_celery_workers_results(kq_client, celery_worker):
    assert kq_client.send_task("compat.add", [2, 3]).get(timeout=TIMEOUT) == 5
    with pytest.raises(ValueError, match="boom"):
        kq_client.send_task("compat.fail", ["boom"]).get(timeout=TIMEOUT)
