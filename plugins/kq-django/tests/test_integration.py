"""kq-django's Django integration: connections closed around a worker's tasks (and left alone
around eager calls and open transactions), connections dropped in a forked child, publishing on
commit, and a kq App from ``KQ_*`` Django settings."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kq import App
from kq.exceptions import ConfigurationError
from kq.testing.worker import worker_thread
from kq_django import (
    DjangoTask,
    app_from_settings,
    apply_async_on_commit,
    autodiscover_tasks,
    delay_on_commit,
    settings_from_django,
)
from kq_django.integration import close_connections


@pytest.fixture
def app(django_database: str, tmp_path: Path) -> Iterator[App]:
    app = App(
        "kqdj.integration",
        broker=f"sqlite:///{tmp_path / 'broker.sqlite3'}",
        backend="django://",
        task_cls=DjangoTask,
    )
    yield app
    app.close()


def depth(app: App, queue: str = "celery") -> int:
    transport = app.new_transport()
    try:
        return transport.depth(queue)
    finally:
        transport.close()


def backend_pid_alive(pid: int) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def test_each_task_starts_without_the_connection_the_previous_one_used(app: App) -> None:
    """CONN_MAX_AGE is 0: the connection a task opened is closed around it, so the next task on
    the same thread starts with none, gets a new server process, and the old one is gone."""

    @app.task(name="kqdj.connection")
    def connection_state() -> dict:
        from django.db import connection

        open_at_start = connection.connection is not None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return {"open_at_start": open_at_start, "pid": cursor.fetchone()[0]}

    with worker_thread(app, pool="threads", concurrency=1):
        first = connection_state.delay().get(timeout=30)
        second = connection_state.delay().get(timeout=30)
    assert first["open_at_start"] is False and second["open_at_start"] is False
    assert first["pid"] != second["pid"]
    assert not backend_pid_alive(first["pid"])


def test_an_eager_call_keeps_the_callers_connection_and_transaction(app: App) -> None:
    from django.db import connection, transaction

    @app.task(name="kqdj.count")
    def count() -> int:
        from kq_django.models import TaskResult

        return TaskResult.objects.count()

    with transaction.atomic():
        connection.ensure_connection()
        before = connection.connection
        count.apply().get()
        close_connections()  # not even asked directly: it is inside a transaction
        assert connection.connection is before and connection.in_atomic_block


def test_a_forked_child_drops_the_inherited_connection_and_the_parent_keeps_it(django_database: str) -> None:
    from django.db import connection

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        parent_pid = cursor.fetchone()[0]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            dropped = connection.connection is None
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                own = cursor.fetchone()[0]
            connection.close()
            os.write(write, f"{dropped} {own != parent_pid}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    os.waitpid(child, 0)
    assert report == "True True"
    with connection.cursor() as cursor:  # the parent's session survived the child
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == parent_pid
    connection.close()


def test_publishing_waits_for_the_commit_and_never_happens_on_rollback(app: App) -> None:
    from django.db import transaction

    @app.task(name="kqdj.noop")
    def noop(x: int) -> int:
        return x

    with pytest.raises(RuntimeError), transaction.atomic():
        delay_on_commit(noop, 1)
        noop.delay_on_commit(2)
        noop.apply_async_on_commit((3,), countdown=0)
        raise RuntimeError("roll back")
    assert depth(app) == 0
    with transaction.atomic():
        delay_on_commit(noop, 4)
        apply_async_on_commit(noop.s(5), task_id="kqdj-5")
        with transaction.atomic():  # a savepoint: still waits for the outer commit
            noop.delay_on_commit(6)
        with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back
            noop.delay_on_commit(7)
            raise RuntimeError("roll back the savepoint")
        assert depth(app) == 0
    assert depth(app) == 3
    delay_on_commit(noop, 8)  # no transaction: sent at once
    assert depth(app) == 4


def test_an_app_from_kq_settings_in_django_settings(django_database: str) -> None:
    from django.test import override_settings

    with override_settings(
        KQ_BROKER_URL="redis://127.0.0.1:6379/9", KQ_TASK_DEFAULT_QUEUE="shop", KQ_RESULT_BACKEND="django://"
    ):
        assert settings_from_django() == {
            "broker_url": "redis://127.0.0.1:6379/9",
            "task_default_queue": "shop",
            "result_backend": "django://",
        }
        app = app_from_settings("shop", task_acks_late=True)
    conf = app.conf
    assert (conf.broker_url, conf.task_default_queue, conf.task_acks_late) == (
        "redis://127.0.0.1:6379/9",
        "shop",
        True,
    )
    assert app.task_cls is DjangoTask


def test_a_misspelt_kq_setting_is_named_with_the_right_one(django_database: str) -> None:
    from django.test import override_settings

    with (
        override_settings(KQ_BROKER_ULR="redis://"),
        pytest.raises(ConfigurationError, match="Django setting KQ_BROKER_ULR: .*did you mean KQ_BROKER_URL"),
    ):
        settings_from_django()


def test_autodiscover_imports_each_apps_tasks_module(django_database: str) -> None:
    from django.test import override_settings

    with override_settings(INSTALLED_APPS=["kq_django", "kqdj_shop"]):
        assert autodiscover_tasks() == ["kqdj_shop.tasks"]
    assert sys.modules["kqdj_shop.tasks"].IMPORTED
