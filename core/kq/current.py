"""The app and task request in effect right now.

``AsyncResult(id)`` with no app, and ``task.request`` inside a running task, read from here.
This module sits below the app and task modules so that both can use it without importing
each other. Context variables keep the request right per thread, per greenlet and per asyncio
task.
"""

from __future__ import annotations

import contextvars
from typing import Any

from .exceptions import KQError

_app: Any = None
request_var: contextvars.ContextVar[Any] = contextvars.ContextVar("kq_request", default=None)


def set_current_app(app: Any) -> None:
    global _app
    _app = app


def current_app() -> Any:
    """The most recently created App."""
    if _app is None:
        raise KQError("no kq App exists yet: create one with kq.App(...) or pass app=...")
    return _app


def current_request() -> Any:
    """The :class:`~kq.task.Request` of the task running in this context, or ``None``."""
    return request_var.get()
