"""Signals: plain callables connected to kq's lifecycle hooks, for applications.

A plugin implements a hook with ``@kq.hookimpl``; an application that only wants to be told
connects a function instead: ``kq.signals.task_failure.connect(fn)``. Each :class:`Signal` is one
hook. While a signal has receivers, a relay plugin registered with kq's plugin manager (through
:meth:`kq.plugins.Plugins.register`, the path every plugin takes) implements that hook and calls
them; a hook with no receivers has no relay, so the kernel still finds no implementation and
skips the call on its hot paths. That is why receivers belong at import time, next to the tasks:
a worker looks its task hooks up once, when it starts.

Receivers get the hook's arguments as keyword arguments (accept ``**kwargs`` too: hooks may gain
arguments). One that raises is logged and the others still run; it never fails the task or stops
the worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import importlib_metadata

from .hookspecs import hookimpl
from .plugins import Plugins, on_load

log = logging.getLogger("kq.signals")

#: The name the relay plugin has in ``kq plugins``.
PLUGIN_NAME = "signals"

Receiver = Callable[..., Any]


class Signal:
    """One lifecycle hook as a list of receivers: :meth:`connect`, :meth:`disconnect`."""

    def __init__(self, name: str, hook: str, doc: str) -> None:
        self.name = name
        self.hook = hook
        self.__doc__ = doc
        self._receivers: tuple[Receiver, ...] = ()  # replaced, never mutated: send needs no lock

    def __repr__(self) -> str:
        return f"<kq.signals.{self.name} ({self.hook}), {len(self._receivers)} receiver(s)>"

    @property
    def receivers(self) -> tuple[Receiver, ...]:
        return self._receivers

    def connect(self, receiver: Receiver) -> Receiver:
        """Call ``receiver(**arguments)`` each time the hook fires; returns ``receiver``, so this
        works as a decorator. Connecting the same callable twice keeps one connection."""
        if not callable(receiver):
            raise TypeError(f"{self.name}.connect() needs a callable, got {receiver!r}")
        with _lock:
            if receiver not in self._receivers:
                self._receivers += (receiver,)
                if len(self._receivers) == 1:
                    _resync()
        return receiver

    def disconnect(self, receiver: Receiver) -> bool:
        """Stop calling ``receiver``; False if it was not connected."""
        with _lock:
            if receiver not in self._receivers:
                return False
            self._receivers = tuple(r for r in self._receivers if r != receiver)
            if not self._receivers:
                _resync()
        return True

    def send(self, **arguments: Any) -> None:
        """Call every receiver with ``arguments``, logging (not raising) what they raise."""
        for receiver in self._receivers:
            try:
                receiver(**arguments)
            except Exception:
                log.exception("kq: receiver %r of signal %s raised", receiver, self.name)


before_task_publish = Signal(
    "before_task_publish",
    "kq_before_publish",
    "Before a task message is published: ``app``, ``message`` (a TaskMessage), ``queue``, "
    "``envelope`` (what goes on the wire; receivers may add to its ``headers``).",
)
after_task_publish = Signal(
    "after_task_publish",
    "kq_after_publish",
    "After a task message was handed to the broker: ``app``, ``message``, ``queue``.",
)
task_prerun = Signal("task_prerun", "kq_task_prerun", "Just before a task body runs: ``task``, ``request``.")
task_postrun = Signal(
    "task_postrun",
    "kq_task_postrun",
    "After a task body ran, whatever the outcome: ``task``, ``request``, ``state``, ``retval``.",
)
task_success = Signal(
    "task_success",
    "kq_task_success",
    "After a task returned, before its result is stored: ``task``, ``request``, ``retval``.",
)
task_failure = Signal(
    "task_failure",
    "kq_task_failure",
    "After a task raised and will not be retried: ``task``, ``request``, ``exc``, ``traceback``.",
)
task_retry = Signal(
    "task_retry", "kq_task_retry", "When a task asks to be retried: ``task``, ``request``, ``reason``."
)
task_revoked = Signal(
    "task_revoked",
    "kq_task_revoked",
    "When a task is not run because it was revoked or expired: ``request``, ``reason``.",
)
task_rejected = Signal(
    "task_rejected",
    "kq_message_rejected",
    "When a worker refuses a message it received: ``delivery``, ``reason``, ``detail``.",
)
worker_ready = Signal(
    "worker_ready",
    "kq_worker_start",
    "When a worker has started its pool and is about to consume: ``worker``.",
)
worker_shutdown = Signal(
    "worker_shutdown",
    "kq_worker_stop",
    "When a worker has stopped consuming and its pool has finished: ``worker``.",
)


# -- the relay: one hook implementation per signal, named and shaped like the hookspec --------


@hookimpl
def kq_before_publish(app: Any, message: Any, queue: str, envelope: Any) -> None:
    before_task_publish.send(app=app, message=message, queue=queue, envelope=envelope)


@hookimpl
def kq_after_publish(app: Any, message: Any, queue: str) -> None:
    after_task_publish.send(app=app, message=message, queue=queue)


@hookimpl
def kq_task_prerun(task: Any, request: Any) -> None:
    task_prerun.send(task=task, request=request)


@hookimpl
def kq_task_postrun(task: Any, request: Any, state: str, retval: Any) -> None:
    task_postrun.send(task=task, request=request, state=state, retval=retval)


@hookimpl
def kq_task_success(task: Any, request: Any, retval: Any) -> None:
    task_success.send(task=task, request=request, retval=retval)


@hookimpl
def kq_task_failure(task: Any, request: Any, exc: BaseException, traceback: str) -> None:
    task_failure.send(task=task, request=request, exc=exc, traceback=traceback)


@hookimpl
def kq_task_retry(task: Any, request: Any, reason: BaseException) -> None:
    task_retry.send(task=task, request=request, reason=reason)


@hookimpl
def kq_task_revoked(request: Any, reason: str) -> None:
    task_revoked.send(request=request, reason=reason)


@hookimpl
def kq_message_rejected(delivery: Any, reason: str, detail: str) -> None:
    task_rejected.send(delivery=delivery, reason=reason, detail=detail)


@hookimpl
def kq_worker_start(worker: Any) -> None:
    worker_ready.send(worker=worker)


@hookimpl
def kq_worker_stop(worker: Any) -> None:
    worker_shutdown.send(worker=worker)


SIGNALS: tuple[Signal, ...] = (
    before_task_publish,
    after_task_publish,
    task_prerun,
    task_postrun,
    task_success,
    task_failure,
    task_retry,
    task_revoked,
    task_rejected,
    worker_ready,
    worker_shutdown,
)
_RELAYS: dict[str, Callable[..., None]] = {
    relay.__name__: relay
    for relay in (
        kq_before_publish,
        kq_after_publish,
        kq_task_prerun,
        kq_task_postrun,
        kq_task_success,
        kq_task_failure,
        kq_task_retry,
        kq_task_revoked,
        kq_message_rejected,
        kq_worker_start,
        kq_worker_stop,
    )
}

_lock = threading.RLock()
_plugins: Plugins | None = None  # the process's plugins, once loaded (see kq.plugins.on_load)


def _sync(plugins: Plugins) -> None:
    """Register a relay implementing exactly the hooks whose signals have receivers (replacing
    the previous one), or none at all."""
    global _plugins
    with _lock:
        _plugins = plugins
        active = {s.hook: _RELAYS[s.hook] for s in SIGNALS if s.receivers}
        plugins.unregister(PLUGIN_NAME)
        if active:
            relay = SimpleNamespace(__name__=__name__, **active)
            plugins.register(relay, PLUGIN_NAME, "kq", _version())


def _version() -> str | None:
    try:
        return importlib_metadata.version("kq")
    except importlib_metadata.PackageNotFoundError:  # run from a source tree
        return None


def _resync() -> None:
    if _plugins is not None:
        _sync(_plugins)


on_load(_sync)
