"""The ``django://`` result backend: results, counters and claims in the Django ORM.

Imported when the first backend is made (never when kq loads the plugin): it sets Django up if
the process has not (see :func:`kq_django.integration.setup`), then imports the models.

Connections are Django's: each thread uses its own connection to the alias, opened on first
use, and Django (or, in a worker, the plugin's task hooks) closes it. A call made inside the
caller's ``transaction.atomic()`` on the same alias joins that transaction, as any ORM write
does; give the backend an alias of its own to keep results out of it (see the README).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from kq.backend import ResultBackend, StoredResult
from kq.config import reject_unknown_options, safe_url
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.redact import scrub

from . import BACKEND_CAPABILITIES
from .integration import setup

T = TypeVar("T")

#: Task ids per SELECT in :meth:`DjangoBackend.get_many` (well under every database's limit on
#: parameters per statement, SQLite's 999 included).
GET_MANY_CHUNK = 900
#: Rows per INSERT in :meth:`DjangoBackend.store_many`.
STORE_MANY_BATCH = 500
#: ``result_backend_options`` this backend accepts.
OPTIONS = ("settings",)


def alias_of(url: str) -> str:
    """The database alias a ``django://`` URL names: ``django://`` is ``default``,
    ``django://replica`` is ``replica``."""
    parts = urlsplit(url)
    alias = parts.netloc  # as written: aliases are case-sensitive
    if (
        parts.scheme.lower() != "django"
        or parts.path.strip("/")
        or parts.query
        or parts.fragment
        or "@" in alias
        or ":" in alias
    ):
        raise ConfigurationError(
            f"{safe_url(url)} is not a Django result backend URL; expected django:// (the "
            f"'default' database) or django://<alias> (an alias in settings.DATABASES)"
        )
    return alias or "default"


class DjangoBackend(ResultBackend):
    """Results in ``kq_django_taskresult``, counters in ``kq_django_counter``, claims in
    ``kq_django_claim``, through the database alias the URL names.

    Options: ``settings``, the Django settings module to use when the process has not set
    Django up and ``DJANGO_SETTINGS_MODULE`` is not set.
    """

    capabilities = BACKEND_CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        reject_unknown_options("django result backend options", self.options, OPTIONS)
        self.alias = alias_of(url)
        setup(self.options.get("settings"))
        from django.apps import apps
        from django.db import connections

        if not apps.is_installed("kq_django"):
            raise ConfigurationError(
                "kq-django: add 'kq_django' to INSTALLED_APPS and run 'manage.py migrate "
                "kq_django' to use the django:// result backend"
            )
        if self.alias not in connections:
            raise ConfigurationError(
                f"{safe_url(url)}: no database alias {self.alias!r} in settings.DATABASES "
                f"(aliases: {', '.join(connections)})"
            )
        from . import models

        self.models = models
        self._tables_checked = False
        self._check_lock = threading.Lock()

    # -- results ----------------------------------------------------------------------------

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        """One upsert (``INSERT ... ON CONFLICT (task_id) DO UPDATE``, Django's
        ``bulk_create(update_conflicts=True)``) per batch, in one transaction. Rows go in task id
        order, the same in every process, so two batches sharing ids lock them in the same order
        and cannot deadlock; an id given twice is written once, the later one winning."""
        if not results:
            return
        expires_at = self._expiry(ttl)
        latest = {r.task_id: r for r in results}
        rows = [
            self.models.TaskResult(task_id=task_id, state=r.state, payload=r.payload, expires_at=expires_at)
            for task_id, r in sorted(latest.items())
        ]

        def write() -> None:
            from django.db import transaction

            with transaction.atomic(using=self.alias):
                self.models.TaskResult.objects.using(self.alias).bulk_create(
                    rows,
                    batch_size=STORE_MANY_BATCH,
                    update_conflicts=True,
                    unique_fields=["task_id"],
                    update_fields=["state", "payload", "expires_at", "date_done"],
                )

        self._run(write)

    def get(self, task_id: str) -> StoredResult | None:
        def read() -> StoredResult | None:
            row = (
                self._live(self.models.TaskResult)
                .filter(task_id=task_id)
                .values_list("state", "payload")
                .first()
            )
            return None if row is None else StoredResult(task_id, row[0], bytes(row[1]))

        return self._run(read)

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """One ``SELECT ... WHERE task_id IN (...)`` per chunk of ids."""
        if not task_ids:
            return []

        def read() -> dict[str, StoredResult]:
            found: dict[str, StoredResult] = {}
            unique = list(dict.fromkeys(task_ids))
            for start in range(0, len(unique), GET_MANY_CHUNK):
                rows = (
                    self._live(self.models.TaskResult)
                    .filter(task_id__in=unique[start : start + GET_MANY_CHUNK])
                    .values_list("task_id", "state", "payload")
                )
                found.update((tid, StoredResult(tid, state, bytes(payload))) for tid, state, payload in rows)
            return found

        found = self._run(read)
        return [found.get(task_id) for task_id in task_ids]

    def forget(self, task_id: str) -> None:
        self._run(lambda: self.models.TaskResult.objects.using(self.alias).filter(task_id=task_id).delete())

    def cleanup(self) -> int:
        """Delete expired results, counters and claims; return how many rows went."""

        def delete() -> int:
            from django.db import transaction

            now = self._now()
            with transaction.atomic(using=self.alias):
                return sum(
                    model.objects.using(self.alias).filter(expires_at__lte=now).delete()[0]
                    for model in (self.models.TaskResult, self.models.Counter, self.models.Claim)
                )

        return self._run(delete)

    # -- counters ---------------------------------------------------------------------------

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        """``UPDATE ... SET value = value + amount`` (or ``= amount`` when the counter expired),
        then a read of the value, in one transaction: the update's row lock, held until commit,
        keeps every other writer out in between. A missing counter is inserted; when a
        concurrent call inserted it first, the insert fails on the unique key (after waiting for
        that call's commit) and the update runs again."""
        from django.db import IntegrityError, transaction
        from django.db.models import Case, F, Value, When

        counters = self.models.Counter.objects.using(self.alias)
        digest = self.models.key_hash(key)

        def count() -> int:
            for _ in range(3):
                now = self._now()
                expires_at = self._expiry(expires, now)
                with transaction.atomic(using=self.alias):
                    updated = counters.filter(key_hash=digest).update(
                        value=Case(
                            When(expires_at__lte=now, then=Value(amount)), default=F("value") + amount
                        ),
                        expires_at=expires_at,
                    )
                    if updated:
                        value: int = counters.filter(key_hash=digest).values_list("value", flat=True).get()
                        return value
                    try:
                        with transaction.atomic(using=self.alias):  # a savepoint
                            counters.create(key_hash=digest, name=key, value=amount, expires_at=expires_at)
                        return amount
                    except IntegrityError:
                        pass  # a concurrent call created it: add to it on the next round
            raise BackendUnavailable(
                f"result backend {safe_url(self.url)}: counter {key!r} "
                f"kept changing under three attempts to increment it"
            )

        return self._run(count)

    def delete_counter(self, key: str) -> None:
        self._run(
            lambda: (
                self.models.Counter.objects.using(self.alias)
                .filter(key_hash=self.models.key_hash(key))
                .delete()
            )
        )

    # -- claims -----------------------------------------------------------------------------

    def claim(self, key: str, value: str, expires: float) -> str | None:
        """In one transaction: take the claim if it lapsed (an ``UPDATE`` guarded by the expiry,
        which concurrent callers run one after the other on the locked row), else read its holder
        locked (``SELECT ... FOR UPDATE``), else insert it. Two inserts of a free key race on the
        unique key: the loser waits for the winner's commit, fails, and reads the winner."""
        from django.db import IntegrityError, transaction

        claims = self.models.Claim.objects.using(self.alias)
        digest = self.models.key_hash(key)

        def take() -> str | None:
            for _ in range(3):
                now = self._now()
                expires_at = now + datetime.timedelta(seconds=expires)
                with transaction.atomic(using=self.alias):
                    if claims.filter(key_hash=digest, expires_at__lte=now).update(
                        holder=value, expires_at=expires_at
                    ):
                        return None
                    holder = (
                        claims.select_for_update()
                        .filter(key_hash=digest)
                        .values_list("holder", flat=True)
                        .first()
                    )
                    if holder is not None:
                        held: str = holder
                        return held
                    try:
                        with transaction.atomic(using=self.alias):  # a savepoint
                            claims.create(key_hash=digest, name=key, holder=value, expires_at=expires_at)
                        return None
                    except IntegrityError:
                        pass  # taken meanwhile: the next round reads the holder
            raise BackendUnavailable(
                f"result backend {safe_url(self.url)}: claim {key!r} kept "
                f"changing under three attempts to take it"
            )

        return self._run(take)

    def release(self, key: str, value: str) -> None:
        self._run(
            lambda: (
                self.models.Claim.objects.using(self.alias)
                .filter(key_hash=self.models.key_hash(key), holder=value)
                .delete()
            )
        )

    def close(self) -> None:
        """Nothing to release: the connections are Django's, per thread, closed by Django at the
        end of a request and by kq-django's hooks around a worker's tasks."""

    # -- helpers ----------------------------------------------------------------------------

    def _now(self) -> datetime.datetime:
        from django.utils import timezone

        now: datetime.datetime = timezone.now()
        return now

    def _expiry(
        self, seconds: float | None, now: datetime.datetime | None = None
    ) -> datetime.datetime | None:
        if seconds is None:
            return None
        return (now or self._now()) + datetime.timedelta(seconds=seconds)

    def _live(self, model: Any) -> Any:
        """Rows of ``model`` through this alias that have not expired."""
        from django.db.models import Q

        return model.objects.using(self.alias).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=self._now())
        )

    def _run(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` once the tables are known to exist, with connection errors turned
        into :class:`~kq.exceptions.BackendUnavailable` (see :meth:`_connection_errors`), on a
        connection from :meth:`_connection`."""
        with self._connection():
            self._check_tables()
            with self._connection_errors():
                return operation()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """This thread's connection to the alias, for the block.

        A connection the block had to open is closed at its end if Django would not keep it
        (``CONN_MAX_AGE`` 0, the default, or past its age): the thread may be one that nothing
        else closes connections for (a thread of the user's own, a client waiting for a result),
        and a connection left there would stay open until the thread object is collected. A
        connection that was open already belongs to the request or task using it.
        """
        from django.db import connections

        connection = connections[self.alias]
        opened_here = connection.connection is None
        try:
            yield connection
        finally:
            if opened_here and not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        """The base class's polling, on one connection for the whole wait (a thread without
        one would otherwise connect for every poll)."""
        with self._connection() as connection:
            with self._connection_errors():
                connection.ensure_connection()
            return super().wait(task_id, timeout)

    def _check_tables(self) -> None:
        """Once per backend: the tables exist, or a :class:`ConfigurationError` says which
        migration to run (Django's own error would be a ProgrammingError about a relation)."""
        if self._tables_checked:
            return
        with self._check_lock:
            if self._tables_checked:
                return
            from django.db import connections

            with self._connection_errors():
                tables = set(connections[self.alias].introspection.table_names())
            wanted = [
                m._meta.db_table for m in (self.models.TaskResult, self.models.Counter, self.models.Claim)
            ]
            missing = [t for t in wanted if t not in tables]
            if missing:
                raise ConfigurationError(
                    f"kq-django: the database {self.alias!r} has no table {', '.join(missing)}; "
                    f"run 'manage.py migrate kq_django --database {self.alias}'"
                )
            self._tables_checked = True

    @contextmanager
    def _connection_errors(self) -> Iterator[None]:
        """A lost or refused connection (also a server shutting down) becomes
        :class:`~kq.exceptions.BackendUnavailable`, which the worker retries; the broken
        connection is closed first, so that the next call connects afresh. Other database errors
        (a bad statement) pass through: retrying them cannot help."""
        from django.db import InterfaceError, OperationalError, connections

        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            connection = connections[self.alias]
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            raise BackendUnavailable(
                f"result backend {safe_url(self.url)} (database "
                f"{self.alias!r}) is unavailable: "
                f"{scrub(' '.join(str(exc).split()), self.url)}"
            ) from exc
