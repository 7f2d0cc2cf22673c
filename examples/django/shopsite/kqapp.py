"""The shop's kq app. Workers run ``kq worker -A shopsite.kqapp:app``.

Set Django up first (the worker imports this module before anything else), then make the app
from the ``KQ_*`` settings and import every installed app's ``tasks`` module.
"""

import os

import kq_django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
kq_django.setup()

app = kq_django.app_from_settings("shop")
kq_django.autodiscover_tasks()
