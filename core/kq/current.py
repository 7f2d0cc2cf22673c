"""The app, task and task request in effect right now.

``AsyncResult(id)`` with no app, ``task.request`` inside a running task, ``kq.current_app`` and
``kq.current_task`` read from here. This module sits below the app and task modules so that
both can use it without importing each other. Context variables keep the task and its request
right per thread, per greenlet and per asyncio task.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from .exceptions import KQError

_app: Any = None
request_var: contextvars.ContextVar[Any] = contextvars.ContextVar("kq_request", default=None)
task_var: contextvars.ContextVar[Any] = contextvars.ContextVar("kq_task", default=None)


def set_current_app(app: Any) -> None:
    global _app
    _app = app


def current_app() -> Any:
    """The app of the task running in this context, else the most recently created App."""
    task = task_var.get()
    if task is not None:
        return task.app
    if _app is None:
        raise KQError("no kq App exists yet: create one with kq.App(...) or pass app=...")
    return _app


def current_request() -> Any:
    """The :class:`~kq.task.Request` of the task running in this context, or ``None``."""
    return request_var.get()


def current_task() -> Any:
    """The :class:`~kq.Task` running in this context, or ``None``."""
    return task_var.get()


class Proxy:
    """Stands for what ``get()`` returns each time it is used, so a module-level name
    (``kq.current_app``, ``kq.current_task``, a ``shared_task``) follows the context."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[], Any]) -> None:
        object.__setattr__(self, "_get", get)

    def _get_current_object(self) -> Any:
        return self._get()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get()(*args, **kwargs)

    def __bool__(self) -> bool:
        try:
            return bool(self._get())
        except KQError:
            return False

    def __eq__(self, other: object) -> bool:
        equal: bool = self._get() == (other._get() if isinstance(other, Proxy) else other)
        return equal

    def __hash__(self) -> int:
        return hash(self._get())

    def __repr__(self) -> str:
        try:
            return f"<proxy of {self._get()!r}>"
        except KQError as exc:
            return f"<proxy: {exc}>"
