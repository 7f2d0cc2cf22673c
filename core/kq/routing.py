"""Choosing the queue (and priority) of each call from the ``task_routes`` setting.

Routing is decided where messages are published, by the client, so it costs the publish path:
the :class:`Router` is compiled once per configuration, a mapping route matches each task name
against its globs once and remembers the answer, and an app without routes does no lookup at
all. Route functions are the exception: they may look at the arguments, so they run every call.

Which queue wins, from strongest to weakest: ``queue=`` given with the call, the first route
that matches, the task's own ``@app.task(queue=...)``, the ``task_default_queue`` setting. Celery
ranks the task's own queue above its routes; kq ranks the configuration above the code, so an
operator can move a task to another queue without editing it (docs/routing.md).
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

import attrs

from .exceptions import ConfigurationError

SETTING = "task_routes"
#: Names remembered per mapping route; past this (names made up per call), matching still works,
#: it is just not remembered.
CACHE_LIMIT = 10_000
_GLOB_CHARS = frozenset("*?[")
_ROUTE_KEYS = frozenset({"queue", "priority"})

RouteFunction = Callable[..., Any]


@attrs.frozen
class Route:
    """Where a route sends a task; ``None`` leaves the choice to the next rule down."""

    queue: str | None = None
    priority: int | None = None


def as_route(value: Any, where: str) -> Route:
    """A route from what a mapping or a route function gave: a queue name or a mapping with
    ``queue`` and/or ``priority``. ``where`` says which route it came from, for the error."""
    if isinstance(value, str) and value:
        return Route(queue=value)
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{SETTING}: {where} must be a queue name or a mapping with "
            f"'queue' and/or 'priority', got {value!r}"
        )
    unknown = sorted(set(value) - _ROUTE_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{SETTING}: {where} has unknown option(s) {unknown}; accepted: {sorted(_ROUTE_KEYS)}"
        )
    queue, priority = value.get("queue"), value.get("priority")
    if queue is not None and not (isinstance(queue, str) and queue):
        raise ConfigurationError(f"{SETTING}: {where}: queue must be a non-empty string, got {queue!r}")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9
    ):
        raise ConfigurationError(
            f"{SETTING}: {where}: priority must be a whole number from 0 to 9, got {priority!r}"
        )
    return Route(queue=queue, priority=priority)


class MapRoute:
    """A mapping of task names, globs (``"billing.*"``) and compiled regular expressions to
    routes. Exact names win; then patterns in the mapping's order, the first match wins."""

    def __init__(self, routes: Mapping[Any, Any]) -> None:
        self._exact: dict[str, Route] = {}
        self._patterns: list[tuple[re.Pattern[str], Route]] = []
        for key, value in routes.items():
            route = as_route(value, f"the route for {key!r}")
            if isinstance(key, re.Pattern):
                self._patterns.append((key, route))
            elif not isinstance(key, str) or not key:
                raise ConfigurationError(
                    f"{SETTING}: keys must be task names, globs or compiled regular expressions, got {key!r}"
                )
            elif _GLOB_CHARS.isdisjoint(key):
                self._exact[key] = route
            else:
                self._patterns.append((re.compile(fnmatch.translate(key)), route))
        self._seen: dict[str, Route | None] = {}

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)

    def queues(self) -> set[str]:
        """The queues this mapping names."""
        routes = [*self._exact.values(), *(route for _, route in self._patterns)]
        return {route.queue for route in routes if route.queue is not None}

    def get(self, name: str) -> Route | None:
        try:
            return self._seen[name]
        except KeyError:
            pass
        found = self._exact.get(name)
        if found is None:
            # A compiled regex matches from the start of the name, as in Celery; a glob's regex
            # (fnmatch) is anchored at both ends.
            found = next((route for pattern, route in self._patterns if pattern.match(name)), None)
        if len(self._seen) < CACHE_LIMIT:
            self._seen[name] = found
        return found


class Router:
    """The compiled ``task_routes`` of one configuration, and the precedence rules."""

    def __init__(self, routes: Any = None, default_queue: str = "celery") -> None:
        self.default_queue = default_queue
        steps = (_compile(step) for step in _as_steps(routes))
        # An empty mapping (the default) matches nothing: drop it, so no lookup happens at all.
        self._steps: tuple[MapRoute | RouteFunction, ...] = tuple(
            step for step in steps if not isinstance(step, MapRoute) or step
        )

    def __bool__(self) -> bool:
        return bool(self._steps)

    def queues(self) -> list[str]:
        """The default queue, then every queue a mapping route names (``kq queues``); queues that
        only route functions choose cannot be known without calling them."""
        named = set().union(*(step.queues() for step in self._steps if isinstance(step, MapRoute)))
        return [self.default_queue, *sorted(named - {self.default_queue})]

    def route(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
        task: Any = None,
    ) -> Route | None:
        """The first route matching this call, or ``None``. Route functions are called as
        ``fn(name, args, kwargs, options, task=task)`` and return a queue name, a mapping or
        ``None`` (no opinion)."""
        for step in self._steps:
            if isinstance(step, MapRoute):
                found = step.get(name)
            else:
                value = step(name, args, kwargs, MappingProxyType(options), task=task)
                found = None if value is None else as_route(value, f"route function {step!r}")
            if found is not None:
                return found
        return None

    def destination(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        queue: str | None,
        options: Mapping[str, Any],
        task: Any = None,
    ) -> tuple[str, int | None]:
        """The queue and priority of one call.

        ``queue`` is the one given with the call (``None`` if not), ``options`` the call's other
        options, ``task`` the registered :class:`~kq.Task` if this process knows it.
        """
        priority = options.get("priority")
        if self._steps and (queue is None or priority is None):
            found = self.route(name, args, kwargs, options, task)
            if found is not None:
                queue = queue or found.queue
                priority = found.priority if priority is None else priority
        if task is not None:  # the task's own defaults come after the routes
            queue, priority = queue or task.queue, task.priority if priority is None else priority
        return queue or self.default_queue, priority


def _as_steps(routes: Any) -> list[Any]:
    if routes is None:
        return []
    if isinstance(routes, (list, tuple)):
        return list(routes)
    return [routes]


def _compile(step: Any) -> MapRoute | RouteFunction:
    if isinstance(step, str):
        step = _load(step)
    if isinstance(step, Mapping):
        return MapRoute(step)
    if callable(step):
        return cast(RouteFunction, step)
    raise ConfigurationError(
        f"{SETTING} must be a mapping, a route function, the import path of "
        f"one ('module:name'), or a list of these; got {step!r}"
    )


def _load(path: str) -> Any:
    """``"pkg.module:name"`` or ``"pkg.module.name"``: a route mapping or function by import
    path, so that routes can be named in the environment or a config file."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attr) if module and attr else None
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{SETTING}: cannot import {path!r}: {exc}") from None
    if found is None:
        raise ConfigurationError(f"{SETTING}: {path!r} is not an import path like 'module:name'")
    return found
