"""Django for kq-django's tests: a PostgreSQL database made for this test run, migrated, and
dropped at the end.

Django can be configured once per process, so it is set up here, for the whole session, from
``kqdj_settings`` (beside this file) and only when a test asks for ``django_database``: tests
elsewhere in the suite never see it. Spawned children (the contract's races) and worker
processes find the same settings through ``DJANGO_SETTINGS_MODULE``, ``KQDJ_TEST_DATABASE``
and ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kq.testing.servers import require

TESTS = Path(__file__).resolve().parent
SETTINGS = "kqdj_settings"


def _admin(host: str, port: int):  # noqa: ANN202 - a psycopg connection
    import psycopg

    return psycopg.connect(host=host, port=port, user="postgres", dbname="test", autocommit=True)


@pytest.fixture(scope="session")
def django_database() -> Iterator[str]:
    """The name of this run's database, with kq_django's tables, and Django set up on it."""
    host, port = require("postgresql")
    name = f"kq_django_{uuid.uuid4().hex[:12]}"
    with _admin(host, port) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    saved = {key: os.environ.get(key) for key in ("DJANGO_SETTINGS_MODULE", "KQDJ_TEST_DATABASE")}
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["KQDJ_TEST_DATABASE"] = name
    sys.path.insert(0, str(TESTS))
    try:
        import django
        from django.conf import settings
        from django.core.management import call_command

        django.setup()
        assert settings.DATABASES["default"]["NAME"] == name, (
            "Django was already set up with other settings in this process"
        )
        call_command("migrate", "kq_django", verbosity=0)
        call_command("migrate", "kq_django", database="results", verbosity=0)
        yield name
    finally:
        from django.db import connections

        connections.close_all()
        with _admin(host, port) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        sys.path.remove(str(TESTS))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def worker_env(django_database: str) -> dict[str, str]:
    """The environment of a worker process that uses this run's Django database."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return {"DJANGO_SETTINGS_MODULE": SETTINGS, "KQDJ_TEST_DATABASE": django_database, "PYTHONPATH": path}
