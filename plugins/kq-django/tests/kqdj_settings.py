"""Django settings for kq-django's tests: PostgreSQL on the test server, in a database made for
one test run (its name in ``KQDJ_TEST_DATABASE``, set by ``conftest.django_database``)."""

import os

SECRET_KEY = "kq-django tests"
INSTALLED_APPS = ["kq_django"]
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["KQDJ_TEST_DATABASE"],
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": 5432,
        # Django's default, 0: a connection lives for one request, or, in a worker, one task.
        # The end-to-end test's worker keeps them (KQDJ_CONN_MAX_AGE), as production ones do.
        "CONN_MAX_AGE": int(os.environ.get("KQDJ_CONN_MAX_AGE", "0")),
    },
}
# The same database under a second alias, as a project that keeps kq's writes out of its own
# transactions configures it (see the README).
DATABASES["results"] = dict(DATABASES["default"])
# Nothing listens there: a database that is down.
DATABASES["down"] = {
    **DATABASES["default"],
    "PORT": 1,
    "PASSWORD": "hunter2",
    "OPTIONS": {"connect_timeout": 2},
}
