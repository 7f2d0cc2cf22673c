"""Exceptions raised by kq.

Every error kq raises on purpose derives from :class:`KQError`, so an application can catch the
whole family in one place.
"""

from __future__ import annotations

import builtins


class KQError(Exception):
    """Base class of every error kq raises on purpose."""


class ConfigurationError(KQError):
    """A setting has a value kq cannot use; the message names the setting and what is allowed."""


class PluginError(KQError):
    """The set of installed plugins cannot serve a request, or two plugins clash."""


class NotRegistered(KQError, KeyError):
    """A task name that the app does not know."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else "task not registered"


class MessageRejected(KQError):
    """A received message that the worker refuses to run.

    ``reason`` is a short machine-readable word (``decode``, ``content-type``, ``unknown-task``,
    ``malformed``, ``expired``, ...) used for counting and dead-lettering; the message text is
    for humans.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ContentDisallowed(MessageRejected):
    """A message whose content type is not in ``accept_content``."""

    def __init__(self, detail: str) -> None:
        super().__init__("content-type", detail)


class TimeoutError(KQError, builtins.TimeoutError):  # noqa: A001 - deliberately also the builtin one
    """Waiting for a result took longer than the caller allowed."""


class TaskError(KQError):
    """A task failed in a worker with an exception that cannot be rebuilt here.

    kq rebuilds the original exception type when it is a builtin or its module is already
    imported; otherwise this stands in for it, keeping the remote type and module in its text.
    """

    def __init__(self, exc_type: str, exc_module: str, message: str) -> None:
        super().__init__(f"{exc_module}.{exc_type}: {message}")
        self.exc_type = exc_type
        self.exc_module = exc_module
        self.message = message


class TaskRevoked(KQError):
    """The task was revoked (or expired) before it could run."""


class Retry(KQError):
    """Raised by :meth:`kq.Task.retry` to end this run of a task: the worker records RETRY
    (with ``exc``, the reason) and sends ``message``, the next attempt, due at ``when``, to
    ``queue``.

    A task may also raise ``Retry()`` itself: the run is then recorded as RETRY and nothing is
    sent again.
    """

    def __init__(
        self,
        message: object = None,
        exc: BaseException | None = None,
        when: object = None,
        queue: str | None = None,
    ) -> None:
        super().__init__(
            f"retry {'at ' + str(when) if when else 'now'}" + (f": {exc!r}" if exc is not None else "")
        )
        self.message = message
        self.exc = exc
        self.when = when
        self.queue = queue


class MaxRetriesExceededError(KQError):
    """``task.retry()`` was called after the task's ``max_retries`` was used up."""


class PoolClosed(KQError, RuntimeError):
    """A job was submitted to a pool that has been shut down."""


class EncodeError(KQError):
    """A value (task arguments or a result) could not be serialized with the chosen format."""


class BackendUnavailable(KQError, ConnectionError):
    """The result backend cannot be reached. Backends raise it for connection failures so the
    kernel can retry; the message names the URL with its password masked."""


class BrokerUnavailable(KQError, ConnectionError):
    """The broker cannot be reached. The message names the URL with its password masked."""


class SoftTimeLimitExceeded(KQError):
    """Raised inside a running task when its soft time limit passes, so it can clean up.

    A task that catches it and goes on is still subject to its hard time limit.
    """


class TimeLimitExceeded(KQError):
    """A task ran past its hard time limit and was stopped (its process replaced, or its
    greenlet or coroutine cancelled, depending on the pool)."""


class WorkerLostError(KQError):
    """The process running a task died before the task ended (killed, out of memory)."""
