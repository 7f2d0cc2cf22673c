"""A small Flask app (app factory) that hands work to kq workers.

    POST /greetings {"name": "Ada"}   -> 202 {"task_id": ..., "result_url": ...}
    POST /notes {"text": "..."}       -> 202 {"task_id": ..., "result_url": ...}
    GET  /notes                       -> the notes the workers have saved
    GET  /tasks/<task_id>             -> {"state": ..., "value": ... once it succeeded}

Run it with ``flask --app flask_example_app run`` and a worker with
``kq worker -A flask_example_worker:kq_app`` (see README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flask_example_db
from flask import Blueprint, Flask, abort, current_app, request, url_for
from flask_example_db import get_db
from flask_example_kq import init_kq
from flask_example_tasks import greet, save_note

import kq
from kq import states

bp = Blueprint("kq_example", __name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory. Settings: defaults, then ``FLASK_*`` environment variables
    (``FLASK_GREETING=Bonjour``, ``FLASK_KQ='{"broker_url": "redis://..."}'``), then
    ``test_config``."""
    app = Flask(__name__)
    app.config.from_mapping(
        GREETING="Hello",
        DATABASE="notes.sqlite3",
        # kq's settings, by kq's names (docs/configuration.md).
        KQ={"broker_url": "sqlite:///kq.sqlite3", "result_backend": "sqlite:///kq.sqlite3"},
    )
    app.config.from_prefixed_env()
    if test_config is not None:
        app.config.from_mapping(test_config)
    flask_example_db.init_app(app)
    init_kq(app)
    app.register_blueprint(bp)
    return app


def _field(name: str) -> str:
    value = (request.get_json(silent=True) or {}).get(name)
    if not isinstance(value, str) or not value.strip():
        abort(400, description=f"send JSON with a non-empty string {name!r}")
    return value


def _accepted(result: kq.AsyncResult) -> tuple[dict[str, str], int]:
    return {"task_id": result.id, "result_url": url_for(".task_result", task_id=result.id)}, 202


@bp.post("/greetings")
def create_greeting() -> tuple[dict[str, str], int]:
    return _accepted(greet.delay(_field("name")))


@bp.post("/notes")
def create_note() -> tuple[dict[str, str], int]:
    return _accepted(save_note.delay(_field("text")))


@bp.get("/notes")
def list_notes() -> dict[str, Any]:
    rows = get_db().execute("SELECT id, text FROM notes ORDER BY id").fetchall()
    return {"notes": [dict(row) for row in rows]}


@bp.get("/tasks/<task_id>")
def task_result(task_id: str) -> dict[str, Any]:
    """The task's state, and its value once it succeeded (or its error once it failed). It
    never waits: clients poll, so no web worker is held while the task runs."""
    result = current_app.extensions["kq"].AsyncResult(task_id)
    state = result.state  # one backend read; a ready result is kept by the handle
    body: dict[str, Any] = {"task_id": task_id, "state": state}
    if state == states.SUCCESS:
        body["value"] = result.result
    elif state in states.EXCEPTION_STATES:
        body["error"] = repr(result.result)
    return body
