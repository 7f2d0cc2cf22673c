"""``manage.py kq_cleanup``: delete expired results, counters and claims of ``django://``.

Expired rows already read as missing; this reclaims their space. Run it from cron, or from a
periodic kq task, about as often as ``result_expires`` is long (daily for the default day).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from kq_django.backend import DjangoBackend


class Command(BaseCommand):
    help = "Delete the expired rows of kq-django's result backend (results, counters, claims)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="the database alias of the django:// URL (default: default)",
        )

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        deleted = DjangoBackend(f"django://{database}").cleanup()
        self.stdout.write(f"deleted {deleted} expired row(s) from database {database!r}")
