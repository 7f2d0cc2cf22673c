"""What is particular to the ``django://`` backend: URLs, options, the errors that tell a user
what to do, aliases and transactions, and that kq processes which do not use it never import
Django."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from kq.backend import StoredResult
from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq.testing.imports import imported_on_load
from kq_django.backend import DjangoBackend, alias_of


def stored(payload: bytes = b"ok") -> StoredResult:
    return StoredResult(uuid.uuid4().hex, "SUCCESS", payload)


@pytest.mark.parametrize(
    ("url", "alias"),
    [
        ("django://", "default"),
        ("django:///", "default"),
        ("django://results", "results"),
        ("DJANGO://replica/", "replica"),
        ("django://Replica", "Replica"),
    ],
)
def test_the_url_names_the_alias(url: str, alias: str) -> None:
    assert alias_of(url) == alias


@pytest.mark.parametrize(
    "url",
    [
        "django://results/extra",
        "django://default?x=1",
        "django://u:secret@default:5432",
        "django://u:secret@default",
        "db+django://",
    ],
)
def test_other_urls_are_refused_with_the_expected_form(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"expected django://") as caught:
        alias_of(url)
    assert "secret" not in str(caught.value)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown django result backend options table"):
        DjangoBackend("django://", {"table": "x"})


def test_the_scheme_is_served_by_this_plugin() -> None:
    spec = get_plugins().backend_for("django://")
    assert spec.schemes == ("django",)
    assert spec.capabilities == DjangoBackend.capabilities


def test_loading_the_plugin_imports_no_django() -> None:
    """Every kq process loads every plugin: one without Django must not pay for it."""
    assert imported_on_load("django", "django.db", "kq_django.backend", "kq_django.models") == []


def test_an_unknown_alias_is_named(django_database: str) -> None:
    with pytest.raises(ConfigurationError, match=r"no database alias 'nowhere'.*default, results"):
        DjangoBackend("django://nowhere")


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with neither DJANGO_SETTINGS_MODULE nor the tests' path."""
    import os

    environ = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        text=True,
        capture_output=True,
        env={**environ, **(env or {})},
        timeout=60,
    )


def test_a_worker_without_django_settings_is_told_how_to_give_them(tmp_path: Path) -> None:
    done = run_python(
        """
        from kq import App
        from kq.exceptions import ConfigurationError
        try:
            App(broker="sqlite:///b.sqlite3", backend="django://").backend
        except ConfigurationError as exc:
            print(exc)
    """,
        tmp_path,
    )
    assert "Django settings are not configured. Set DJANGO_SETTINGS_MODULE" in done.stdout, done.stderr


def test_a_missing_settings_module_is_named(tmp_path: Path) -> None:
    done = run_python(
        """
        from kq_django.backend import DjangoBackend
        from kq.exceptions import ConfigurationError
        try:
            DjangoBackend("django://", {"settings": "no_such_settings"})
        except ConfigurationError as exc:
            print(exc)
    """,
        tmp_path,
    )
    assert "cannot import the Django settings module 'no_such_settings'" in done.stdout, done.stderr


SQLITE_PROJECT = """
    import django
    from django.conf import settings
    settings.configure(INSTALLED_APPS=[{apps}], USE_TZ=True, DATABASES={{"default": {{
        "ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}}})
    django.setup()
    from kq.exceptions import ConfigurationError
    from kq.backend import StoredResult
    from kq_django.backend import DjangoBackend
"""


def test_without_the_app_installed_the_error_says_to_add_it(tmp_path: Path) -> None:
    done = run_python(
        SQLITE_PROJECT.format(apps="")
        + """
    try:
        DjangoBackend("django://")
    except ConfigurationError as exc:
        print(exc)
    """,
        tmp_path,
    )
    assert "add 'kq_django' to INSTALLED_APPS" in done.stdout, done.stderr


def test_without_migrations_the_error_names_the_command_and_after_them_it_works(tmp_path: Path) -> None:
    """On SQLite, the database of a new Django project: unmigrated, then migrated."""
    done = run_python(
        SQLITE_PROJECT.format(apps='"kq_django"')
        + """
    backend = DjangoBackend("django://")
    try:
        backend.get("x")
    except ConfigurationError as exc:
        print(exc)
    from django.core.management import call_command
    call_command("migrate", "kq_django", verbosity=0)
    backend = DjangoBackend("django://")
    backend.store(StoredResult("t1", "SUCCESS", b"\\x00\\xff"), 60)
    print(backend.get("t1"), backend.incr("c"), backend.incr("c", 2), backend.claim("k", "a", 60),
          backend.claim("k", "b", 60))
    """,
        tmp_path,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "kq-django: the database 'default' has no table kq_django_taskresult, "
        "kq_django_counter, kq_django_claim; run 'manage.py migrate kq_django "
        "--database default'"
    ), done.stderr
    assert (
        lines[1]
        == "StoredResult(task_id='t1', state='SUCCESS', payload=b'\\x00\\xff', reply_to=None) 1 3 None a"
    )


def test_results_are_rows_of_the_model(django_database: str) -> None:
    from kq_django.models import TaskResult

    backend = DjangoBackend("django://")
    result = stored(b"\x00payload")
    backend.store(result, ttl=None)
    row = TaskResult.objects.get(task_id=result.task_id)
    assert (row.state, bytes(row.payload), row.expires_at) == ("SUCCESS", b"\x00payload", None)
    assert row.date_done is not None


def test_an_alias_of_its_own_keeps_results_out_of_the_callers_transaction(django_database: str) -> None:
    """On the caller's alias a store joins the caller's transaction (and is undone with it); on
    an alias of its own it is committed by itself."""
    from django.db import transaction

    same, own = DjangoBackend("django://"), DjangoBackend("django://results")
    joined, apart = stored(), stored()
    with pytest.raises(RuntimeError), transaction.atomic():
        same.store(joined, ttl=60)
        own.store(apart, ttl=60)
        raise RuntimeError("roll back")
    assert same.get(joined.task_id) is None
    assert own.get(apart.task_id) == apart
    assert same.get(apart.task_id) == apart  # one database under two aliases


def test_a_connection_the_backend_opened_is_closed_again(django_database: str) -> None:
    """In a thread nothing else closes connections for, a read leaves none open (CONN_MAX_AGE
    is 0); a connection that was open already is left to its owner."""
    import threading

    from django.db import connection

    backend = DjangoBackend("django://")
    seen: list[object] = []

    def read() -> None:
        backend.get("missing")
        seen.append(connection.connection)
        connection.ensure_connection()
        backend.get("missing")
        seen.append(connection.connection)
        connection.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(30)
    assert seen[0] is None and seen[1] is not None


def test_the_cleanup_command_deletes_expired_rows(django_database: str) -> None:
    import io
    import time

    from django.core.management import call_command

    from kq_django.models import TaskResult

    backend = DjangoBackend("django://results")
    expiring, kept = stored(), stored()
    backend.store(expiring, ttl=0.05)
    backend.store(kept, ttl=None)
    time.sleep(0.1)
    out = io.StringIO()
    call_command("kq_cleanup", database="results", stdout=out)
    assert out.getvalue().startswith("deleted ") and "from database 'results'" in out.getvalue()
    assert not TaskResult.objects.filter(task_id=expiring.task_id).exists()
    assert backend.get(kept.task_id) == kept


def test_a_database_that_is_down_is_unavailable_and_the_next_call_connects_afresh(
    django_database: str,
) -> None:
    """BackendUnavailable is what the worker retries; the broken connection is not kept."""
    from django.db import connections

    from kq.exceptions import BackendUnavailable

    backend = DjangoBackend("django://down")
    for call in (lambda: backend.get("x"), lambda: backend.store(stored(), 60), lambda: backend.incr("c")):
        with pytest.raises(
            BackendUnavailable, match=r"django://down \(database 'down'\) is unavailable"
        ) as caught:
            call()
        assert "hunter2" not in str(caught.value)
        assert connections["down"].connection is None


def test_a_wait_polls_on_one_connection_and_closes_it_after(django_database: str) -> None:
    import threading

    from django.db import connection

    backend = DjangoBackend("django://")
    result = stored()
    pids: list[int] = []
    seen: list[object] = []
    original = backend.get

    def get(task_id: str) -> StoredResult | None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
        return original(task_id)

    backend.get = get  # type: ignore[method-assign]

    def wait() -> None:
        seen.append(backend.wait(result.task_id, timeout=0.3))
        seen.append(connection.connection)

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(30)
    assert seen == [None, None]
    assert len(pids) > 3 and len(set(pids)) == 1
