"""The Celery side of the compatibility tests: a real Celery app with the same three tasks.

:func:`make_app` builds the test process's client; ``app`` is what ``celery -A compat_celery
worker`` runs, configured through ``COMPAT_*`` variables set by tests/compat/conftest.py.
"""

import os

from celery import Celery


def add(x: int, y: int) -> int:
    return x + y


def mul(x: int, y: int) -> int:
    return x * y


def fail(message: str) -> None:
    raise ValueError(message)


def make_app(broker_url: str, backend_url: str, prefix: str, queue: str) -> Celery:
    """A Celery app whose Redis keys (broker and results) live under ``prefix`` and whose
    default queue (where a worker sends a chain's next step too) is ``queue``."""
    app = Celery("compat", broker=broker_url, backend=backend_url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        result_backend_transport_options={"global_keyprefix": prefix},
        broker_connection_retry_on_startup=True,
    )
    if broker_url.startswith("redis"):
        app.conf.broker_transport_options = {"global_keyprefix": prefix}
    for task in (add, mul, fail):
        app.task(name=f"compat.{task.__name__}")(task)
    return app


app = make_app(
    os.environ.get("COMPAT_BROKER_URL", "memory://"),
    os.environ.get("COMPAT_BACKEND_URL", "cache+memory://"),
    os.environ.get("COMPAT_PREFIX", ""),
    os.environ.get("COMPAT_QUEUE", "celery"),
)
