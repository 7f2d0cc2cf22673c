"""kq in a Flask application: the integration to copy into your project (about 20 lines).

``init_kq(flask_app)`` builds the kq App from the Flask config's ``KQ`` mapping (kq's own
setting names: ``broker_url``, ``result_backend``, ...) and keeps it in
``flask_app.extensions["kq"]``. Every task of that App runs inside ``flask_app.app_context()``,
in a worker as in an eager ``task.apply()``: a task body may use ``flask.current_app``,
``flask.g`` and extensions bound to the app, just as a view does.

It is plain kq API: the App's ``task_cls`` is a :class:`kq.Task` subclass whose ``run`` (the call
of the task body, which the worker makes for each run) pushes the context around the body. The
context is pushed per run and popped after it, so ``teardown_appcontext`` handlers close what
the run opened (a database connection kept in ``g``), as they do at the end of a request.
"""

from __future__ import annotations

import inspect
from typing import Any

from flask import Flask

import kq


def init_kq(flask_app: Flask) -> kq.App:
    """Create the kq App of ``flask_app``: configured from ``flask_app.config["KQ"]``, its tasks
    run in ``flask_app``'s application context. ``KQ_*`` environment variables still win over
    the Flask config, as they win over any code setting."""

    class FlaskTask(kq.Task):
        def run(self, *args: Any, **kwargs: Any) -> Any:
            if inspect.iscoroutinefunction(self.fun):  # async def: the body runs when awaited
                return self._run_async(*args, **kwargs)
            with flask_app.app_context():
                return super().run(*args, **kwargs)

        async def _run_async(self, *args: Any, **kwargs: Any) -> Any:
            with flask_app.app_context():
                return await super().run(*args, **kwargs)

    kq_app = kq.App(flask_app.import_name, task_cls=FlaskTask)
    kq_app.config_from_object(flask_app.config.get("KQ", {}))
    flask_app.extensions["kq"] = kq_app
    return kq_app
