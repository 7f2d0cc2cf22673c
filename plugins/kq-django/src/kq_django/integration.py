"""Django and kq together: setting Django up, connections around tasks, publishing on commit,
and a kq App configured from Django settings.

Nothing here imports Django at module level: kq loads this plugin in every kq process, Django
project or not. Each helper imports what it needs when it is called.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from kq import App, Task
from kq.config import Settings
from kq.exceptions import ConfigurationError

log = logging.getLogger("kq.django")

_setup_lock = threading.Lock()
#: Connections a forked child inherited, kept referenced so they are never finalized in it.
_orphans: list[Any] = []


def django_ready() -> bool:
    """Django is imported and ``django.setup()`` has finished in this process; cheap enough for
    every task (no import, two lookups)."""
    apps = sys.modules.get("django.apps")
    return apps is not None and apps.apps.ready


def setup(settings_module: str | None = None) -> None:
    """Make sure Django is configured and its apps are loaded, as ``manage.py`` would.

    Does nothing when Django is already set up (a project's own ``django.setup()``, a web
    server). Otherwise ``settings_module`` is used when ``DJANGO_SETTINGS_MODULE`` is not set,
    then ``django.setup()`` runs, once per process even when threads race here. Raises
    :class:`~kq.exceptions.ConfigurationError` when no settings can be found, naming the ways to
    give them, rather than Django's ``ImproperlyConfigured`` from deep inside the first query.
    """
    if django_ready():
        return
    with _setup_lock:
        if django_ready():
            return
        import django
        from django.conf import settings

        if not settings.configured:
            if settings_module:
                os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
            module = os.environ.get("DJANGO_SETTINGS_MODULE")
            if not module:
                raise ConfigurationError(
                    "kq-django: Django settings are not configured. Set DJANGO_SETTINGS_MODULE "
                    "in the environment of every kq process, or the result_backend_options "
                    "'settings', or call django.setup() in the module the worker imports (-A)"
                )
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigurationError(
                    f"kq-django: cannot import the Django settings module {module!r} "
                    f"(DJANGO_SETTINGS_MODULE): {exc}"
                ) from exc
        django.setup()


def close_connections(everything: bool = False) -> None:
    """Close this thread's database connections that are broken or older than their
    ``CONN_MAX_AGE`` (``everything=True``: all of them), as Django does around each request.

    A connection inside ``transaction.atomic()`` is left alone: closing it would end someone's
    transaction. Does nothing unless Django is set up.
    """
    if not django_ready():
        return
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        if everything:
            connection.close()
        else:
            connection.close_if_unusable_or_obsolete()


def drop_inherited_connections() -> None:
    """In a forked child: forget the connections the forking thread had open, without closing
    them, so that the child opens its own on first use.

    Closing them would end the parent's sessions (the driver says goodbye to the server on the
    shared socket), and using them would interleave two processes' queries on one session. So the
    socket is replaced by ``/dev/null`` in this process only (the driver's goodbye, when the object
    is finalized, goes nowhere) and the object is kept referenced.
    """
    if not django_ready():
        return
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is None:
            continue
        try:
            fd = raw.fileno()
        except Exception:  # a driver without a socket (sqlite3): nothing is shared on the wire
            fd = -1
        if isinstance(fd, int) and fd >= 0:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        _orphans.append(raw)
        connection.connection = None  # Django connects afresh, resetting its state, on next use


def warn_about_debug() -> None:
    """A worker with ``DEBUG = True`` keeps the SQL of the last 9,000 queries per connection in
    memory: a slow, invisible leak in a long-running process. Say so once, at start."""
    if django_ready():
        from django.conf import settings

        if settings.DEBUG:
            log.warning(
                "kq-django: settings.DEBUG is True; Django keeps every connection's recent "
                "queries in memory. Run workers with DEBUG = False in production."
            )


# -- publishing after commit --------------------------------------------------------------------


def apply_async_on_commit(
    task: Any,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    using: str | None = None,
    robust: bool = False,
    **options: Any,
) -> None:
    """Send ``task`` (a task or a signature) with ``apply_async(args, kwargs, **options)`` once
    the current transaction on database ``using`` commits; never, if it rolls back.

    A task published inside ``transaction.atomic()`` can reach a worker before the transaction
    commits, and then the worker does not find the row the task is about. This waits for the
    commit (``transaction.on_commit``). Outside a transaction the task is sent at once.

    Returns ``None``: the task may never be sent. To follow it, pass ``task_id=`` and make
    ``app.AsyncResult(task_id)`` after the commit. ``robust=True`` (Django's) logs an error
    raised by the publish instead of raising it from the commit.
    """
    from django.db import transaction

    transaction.on_commit(lambda: task.apply_async(args, kwargs, **options), using=using, robust=robust)


def delay_on_commit(task: Any, *args: Any, **kwargs: Any) -> None:
    """``task.delay(*args, **kwargs)`` once the current transaction (default database) commits;
    see :func:`apply_async_on_commit`."""
    apply_async_on_commit(task, args, kwargs)


class DjangoTask(Task[..., Any]):
    """kq's Task with ``delay_on_commit`` and ``apply_async_on_commit`` methods.

    :func:`app_from_settings` makes every task one; elsewhere ``App(task_cls=DjangoTask)`` or
    ``@app.task(base=DjangoTask)``.
    """

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """:meth:`delay`, once the current transaction commits (see :func:`apply_async_on_commit`)."""
        apply_async_on_commit(self, args, kwargs)

    def apply_async_on_commit(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        using: str | None = None,
        robust: bool = False,
        **options: Any,
    ) -> None:
        """:meth:`apply_async`, once the transaction on ``using`` commits."""
        apply_async_on_commit(self, args, kwargs, using=using, robust=robust, **options)


# -- configuration from Django settings ----------------------------------------------------------


def settings_from_django(prefix: str = "KQ_") -> dict[str, Any]:
    """kq settings from the Django settings named ``<prefix><SETTING>`` (``KQ_BROKER_URL``,
    ``KQ_RESULT_BACKEND``, ``KQ_TASK_ROUTES``, ...), as a mapping for ``app.config_from_object``.

    A ``KQ_`` setting kq does not know is an error naming the closest one, so a typo cannot leave
    a default in place. Sets Django up first (see :func:`setup`).
    """
    setup()
    from django.conf import settings

    known = Settings.names()
    found: dict[str, Any] = {}
    for attribute in dir(settings):
        if not (attribute.startswith(prefix) and attribute.isupper()):
            continue
        name = attribute[len(prefix) :].lower()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {prefix}{close[0].upper()}?" if close else ""
            raise ConfigurationError(f"Django setting {attribute}: kq has no setting {name!r}{hint}")
        found[name] = getattr(settings, attribute)
    return found


def app_from_settings(main: str = "kq", *, prefix: str = "KQ_", **settings: Any) -> App:
    """A kq App for this Django project: settings from ``KQ_*`` Django settings (then
    ``settings`` given here; the ``KQ_*`` environment variables and command-line flags still win
    over both, as for every kq app), and :class:`DjangoTask` as its task class."""
    app = App(main, task_cls=DjangoTask)
    app.config_from_object(settings_from_django(prefix))
    if settings:
        app.configure(**settings)
    return app


def autodiscover_tasks(related_name: str = "tasks") -> list[str]:
    """Import the ``<app>.tasks`` module of every installed Django app that has one, so that a
    worker started with ``-A proj.kq:app`` knows every task; return the modules imported.

    Call it at the end of the module that makes the kq app: the tasks modules import that app.
    """
    setup()
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    imported = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, related_name):
            name = f"{config.name}.{related_name}"
            importlib.import_module(name)
            imported.append(name)
    return imported
