"""kq-django: kq for Django projects.

- A result backend in the Django ORM (``django://`` for the ``default`` database alias,
  ``django://<alias>`` for another), with migrations, counters and claims.
- Database connections closed around every task a worker runs, as Django closes them around
  every request: a connection that the database dropped, or that outlived ``CONN_MAX_AGE``, is
  never handed to the next task. Connections a forked pool child inherits are dropped in it.
- :func:`delay_on_commit` / :class:`DjangoTask`: publish a task only once the surrounding
  transaction commits, so a worker never looks for a row that is not there (yet, or ever).
- :func:`app_from_settings`: a kq App configured from ``KQ_*`` Django settings.

kq imports this module in every kq process (workers, the CLI, clients), Django project or not,
so it imports no Django: the backend, the models and Django itself are imported when a backend is
made or a helper is called, and the hooks do nothing unless Django is already set up.
"""

from __future__ import annotations

import os
from typing import Any

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy

from .integration import (
    DjangoTask,
    app_from_settings,
    apply_async_on_commit,
    autodiscover_tasks,
    close_connections,
    delay_on_commit,
    drop_inherited_connections,
    settings_from_django,
    setup,
    warn_about_debug,
)

__version__ = "0.1.0"
__all__ = [
    "BACKEND_CAPABILITIES",
    "DjangoTask",
    "apply_async_on_commit",
    "app_from_settings",
    "autodiscover_tasks",
    "delay_on_commit",
    "settings_from_django",
    "setup",
]

#: What ``django://`` can do, declared once for the spec and the backend class. Counters and
#: claims are atomic through row locks held until commit (an ``UPDATE ... SET value = value +
#: n`` and a unique-key insert), so on any database whose transactions lock rows (PostgreSQL,
#: MySQL/MariaDB InnoDB, Oracle; SQLite locks the whole file, which is atomic too). No push:
#: the ORM has no notifications, so ``wait()`` polls.
BACKEND_CAPABILITIES = BackendCapabilities(
    push=False, native_expiry=False, shared=True, counters=True, claims=True
)


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=("django",),
            factory=lazy("kq_django.backend:DjangoBackend"),
            capabilities=BACKEND_CAPABILITIES,
            description="results in the Django ORM (django://<alias>); needs kq_django in INSTALLED_APPS",
        )
    ]


@hookimpl
def kq_task_prerun(task: Any, request: Any) -> None:
    """Before each task: close the connections that are broken or past ``CONN_MAX_AGE``."""
    if not request.is_eager:  # an eager call runs inside the caller's request or transaction
        close_connections()


@hookimpl
def kq_task_postrun(task: Any, request: Any) -> None:
    """After each task: the same, so no connection idles past its age between tasks."""
    if not request.is_eager:
        close_connections()


@hookimpl
def kq_worker_start(worker: Any) -> None:
    """Drop what the app's import left open in the worker's thread; warn about ``DEBUG``."""
    close_connections()
    warn_about_debug()


@hookimpl
def kq_worker_stop(worker: Any) -> None:
    close_connections(everything=True)


# A forked pool child (kq-prefork) must not talk on the sockets of its parent's connections:
# both processes would share one database session. The handler does nothing unless Django is
# already set up in the process that forks.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=drop_inherited_connections)
