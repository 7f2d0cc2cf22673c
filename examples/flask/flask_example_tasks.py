"""The example's tasks. ``@kq.shared_task`` registers them with the kq App that ``create_app``
builds (whenever it is built), so this module needs no App at import time: the app factory
pattern. Their bodies use the Flask app context that ``flask_example_kq.FlaskTask`` pushes."""

from __future__ import annotations

from flask import current_app
from flask_example_db import get_db

import kq


@kq.shared_task
def greet(name: str) -> str:
    """A greeting in the words of the app's ``GREETING`` setting: ``current_app`` is the Flask
    app of the process running the task (the worker's)."""
    return f"{current_app.config['GREETING']}, {name}!"


@kq.shared_task
def save_note(text: str) -> int:
    """Store a note in the app's database and return its id. ``get_db()`` keeps the connection
    in ``flask.g``; the app context's teardown closes it when the run ends."""
    db = get_db()
    with db:
        cursor = db.execute("INSERT INTO notes (text) VALUES (?)", (text.strip(),))
    assert cursor.lastrowid is not None
    return cursor.lastrowid
