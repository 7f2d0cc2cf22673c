"""The example's database: one SQLite connection per app context, kept in ``flask.g``, as in
Flask's tutorial. Views and tasks use it the same way, since tasks run in an app context too."""

from __future__ import annotations

import sqlite3

from flask import Flask, current_app, g

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"


def get_db() -> sqlite3.Connection:
    """The connection of the current app context, opened on first use (``DATABASE`` setting)."""
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"], timeout=10)
        g.db.row_factory = sqlite3.Row
        g.db.execute(SCHEMA)
    return g.db


def close_db(exc: BaseException | None = None) -> None:
    """Close the context's connection: registered with ``teardown_appcontext``, so it runs
    at the end of every request and of every task run."""
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
