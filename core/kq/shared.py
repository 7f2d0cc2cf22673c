"""``@kq.shared_task``: tasks defined by a library that does not know the application's App.

Each shared function is registered with every App, those that exist when the decorator runs
and those created later, and the decorator returns a :class:`~kq.current.Proxy` that stands for
the task of whichever app is current where it is used (``kq.current_app``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from .current import Proxy, current_app
from .task import Task

_lock = threading.Lock()
_shared: list[tuple[Callable[..., Any], dict[str, Any], weakref.WeakKeyDictionary[Any, Any]]] = []
_apps: weakref.WeakSet[Any] = weakref.WeakSet()
P = ParamSpec("P")
R = TypeVar("R")


def _register(
    app: Any, fun: Callable[..., Any], options: dict[str, Any], tasks: weakref.WeakKeyDictionary[Any, Any]
) -> None:
    tasks[app] = app.task(fun, **options)


def attach(app: Any) -> None:
    """Register every shared task with a new ``app`` (called by ``App()``)."""
    with _lock:
        _apps.add(app)
        for fun, options, tasks in _shared:
            _register(app, fun, options, tasks)


# Typed as App.task is (see there): the proxy stands for a Task[P, R] of the current app.
@overload
def shared_task(
    fun: Callable[Concatenate[Any, P], R], /, *, bind: Literal[True], **options: Any
) -> Task[P, R]: ...
@overload
def shared_task(fun: Callable[P, R], /, *, bind: Literal[False] = False, **options: Any) -> Task[P, R]: ...
@overload
def shared_task(
    *, bind: Literal[True], **options: Any
) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...
@overload
def shared_task(
    *, bind: Literal[False] = False, **options: Any
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
@overload
def shared_task(*, bind: bool, **options: Any) -> Callable[[Callable[..., Any]], Task[..., Any]]: ...


def shared_task(fun: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``@kq.shared_task`` or ``@kq.shared_task(bind=True, ...)``: ``@app.task`` for every app.

    Options are those of ``App.task``. The result is a proxy: ``add.delay(2, 2)`` sends through
    the current app (the app of the task running in this context, else the newest App).
    """

    def share(f: Callable[..., Any]) -> Any:
        tasks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        with _lock:
            _shared.append((f, dict(options), tasks))
            for app in list(_apps):
                _register(app, f, dict(options), tasks)
        return Proxy(lambda: tasks[current_app()])

    return share(fun) if fun is not None else share
