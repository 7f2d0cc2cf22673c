"""Settings of the shop example: a Django project whose orders are confirmed by a kq worker.

The database is PostgreSQL (``SHOP_DATABASE``, default ``shop``, on 127.0.0.1 as user
``postgres``); kq's settings are the ``KQ_*`` ones at the end, read by
``kq_django.app_from_settings`` (``KQ_*`` environment variables still win over them).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example only: set SHOP_SECRET_KEY in production")
DEBUG = os.environ.get("SHOP_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "kq_django",  # the django:// result backend's tables
    "orders",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shopsite.urls"
USE_TZ = True
TIME_ZONE = "UTC"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SHOP_DATABASE", "shop"),
        "USER": os.environ.get("SHOP_DATABASE_USER", "postgres"),
        "HOST": os.environ.get("SHOP_DATABASE_HOST", "127.0.0.1"),
        "PORT": 5432,
        # Django's default: one connection per request, and (kq-django) one per task.
        "CONN_MAX_AGE": 0,
    },
}

# -- kq --------------------------------------------------------------------------------------
KQ_BROKER_URL = f"sqlite:///{BASE_DIR / 'kq.sqlite3'}"
KQ_RESULT_BACKEND = "django://"
KQ_TASK_DEFAULT_QUEUE = "shop"
KQ_RESULT_EXPIRES = 7 * 24 * 3600
