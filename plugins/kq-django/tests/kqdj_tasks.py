"""The kq app a worker process of kq-django's tests imports (``kq worker -A kqdj_tasks:app``).

Its broker is ``KQDJ_BROKER_URL``; results go to the Django ORM (``django://``), so the worker
sets Django up from ``DJANGO_SETTINGS_MODULE`` when it makes the backend, as a project's worker
would.
"""

import os

from kq import App

app = App("kqdj", broker=os.environ.get("KQDJ_BROKER_URL", "sqlite:///kqdj.sqlite3"), backend="django://")


@app.task(name="kqdj.square")
def square(x: int) -> int:
    return x * x


@app.task(name="kqdj.connection")
def connection() -> dict:
    """What this task's thread sees of its Django connection: whether one was open when the task
    started (the hooks close it when it is obsolete), and the server process behind the one it
    then uses."""
    from django.db import connection as db

    open_at_start = db.connection is not None
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    return {"open_at_start": open_at_start, "pid": pid}
