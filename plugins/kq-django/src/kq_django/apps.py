"""The Django app: add ``"kq_django"`` to ``INSTALLED_APPS`` and run ``manage.py migrate``."""

from __future__ import annotations

from django.apps import AppConfig


class KqDjangoConfig(AppConfig):
    name = "kq_django"
    label = "kq_django"
    verbose_name = "kq task results"
    default_auto_field = "django.db.models.BigAutoField"
