"""Celery's names for what kq calls otherwise, so that a Celery code base moves with an import
change (``from kq.compat.celery import Celery, shared_task``) and its old setting names.

Only names that differ are here; everything else has Celery's name in :mod:`kq` already. What kq
lacks is not faked: see docs/migrating-from-celery.md for the full mapping.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Mapping, Sequence
from typing import Any

from kq import (
    App,
    AsyncResult,
    GroupResult,
    Signature,
    Task,
    chain,
    chord,
    chunks,
    crontab,
    current_app,
    current_task,
    group,
    shared_task,
    signature,
    states,
)
from kq.exceptions import (
    ConfigurationError,
    MaxRetriesExceededError,
    NotRegistered,
    Retry,
    SoftTimeLimitExceeded,
    TaskRevoked,
    TimeLimitExceeded,
    TimeoutError,
    WorkerLostError,
)

#: Celery's name for :class:`kq.exceptions.TaskRevoked`.
TaskRevokedError = TaskRevoked

#: Celery 3's setting names whose kq (and Celery 4+) name is not just the old one lowercased.
OLD_SETTINGS = {
    "BROKER_URL": "broker_url",
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_MESSAGE_COMPRESSION": "task_compression",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_ROUTES": "task_routes",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_SEND_TASK_SENT_EVENT": "task_send_sent_event",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERY_TIMEZONE": "timezone",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERYD_POOL": "worker_pool",
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_MAX_MEMORY_PER_CHILD": "worker_max_memory_per_child",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
}


def settings_from_celery(obj: Any, namespace: str | None = None) -> dict[str, Any]:
    """kq settings from Celery-style configuration: a mapping, an object, or a module given as
    ``"pkg.module"`` or ``"pkg.module:attribute"`` (``"django.conf:settings"``).

    Lowercase names are taken as they are; ``<NAMESPACE>_NAME`` becomes ``name`` (Celery's
    ``namespace="CELERY"``: ``CELERY_BROKER_URL`` is ``broker_url``); Celery 3's names are
    translated (:data:`OLD_SETTINGS`). Other uppercase names are skipped (a Django settings module
    holds many), but those Celery's start with (``CELERY``, ``BROKER_``) are kept lowercased, so
    that :class:`~kq.App` rejects each setting kq does not have by name instead of ignoring it.
    """
    if isinstance(obj, str):
        module, _, attribute = obj.partition(":")
        obj = importlib.import_module(module)
        if attribute:
            obj = getattr(obj, attribute)
    items = (
        dict(obj)
        if isinstance(obj, Mapping)
        else {  # imports are not settings
            name: value
            for name in dir(obj)
            if not name.startswith("_")
            and not isinstance(value := getattr(obj, name), (type, types.ModuleType))
        }
    )
    prefix = f"{namespace}_" if namespace else None
    settings: dict[str, Any] = {}
    for name, value in items.items():
        if prefix is not None and name.startswith(prefix) and name.isupper():
            settings[name[len(prefix) :].lower()] = value
        elif name in OLD_SETTINGS:
            settings[OLD_SETTINGS[name]] = value
        elif name.isupper() and name.startswith(("CELERY", "BROKER_")):
            settings[name.lower()] = value  # Celery's, not kq's: App() rejects it by name
        elif name.islower() and prefix is None:
            settings[name] = value
    return settings


class Celery(App):
    """:class:`kq.App` under Celery's name, taking Celery's ``main``, ``broker``, ``backend``
    and ``task_cls`` arguments, settings as keywords under their Celery 3 or 4+ names, and
    ``config_from_object(obj, namespace=...)``."""

    def __init__(
        self, main: str | None = None, *, include: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        if include:
            raise ConfigurationError(
                "kq has no include=: import the task modules at the end of the app's module, "
                "or use @shared_task in them and import them from wherever the app is built"
            )
        passed = {key: kwargs.pop(key) for key in ("broker", "backend", "task_cls") if key in kwargs}
        super().__init__(main or "kq", **passed, **settings_from_celery(kwargs))

    def config_from_object(self, obj: Any, namespace: str | None = None) -> None:
        super().config_from_object(settings_from_celery(obj, namespace))


__all__ = [
    "AsyncResult",
    "Celery",
    "GroupResult",
    "MaxRetriesExceededError",
    "NotRegistered",
    "OLD_SETTINGS",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
    "chain",
    "chord",
    "chunks",
    "crontab",
    "current_app",
    "current_task",
    "group",
    "settings_from_celery",
    "shared_task",
    "signature",
    "states",
]
