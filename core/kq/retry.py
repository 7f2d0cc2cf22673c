"""When a failed task runs again: the retry policy a task is registered with, and its delays.

A task's policy comes from its options (``@app.task(autoretry_for=..., retry_backoff=...)``) or
from class attributes of a custom base :class:`~kq.Task`. :meth:`kq.Task.retry` asks the policy
whether another attempt is allowed and when it is due; the worker then records RETRY and sends
the same message again with ``retries`` one higher (see docs/tasks.md, "Retries").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

#: Options of ``@app.task`` (and attributes of a Task class) that make up its policy.
RETRY_OPTIONS = (
    "autoretry_for",
    "max_retries",
    "default_retry_delay",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
)


def _exception_types(value: Any) -> tuple[type[BaseException], ...]:
    types = (value,) if isinstance(value, type) else tuple(value or ())
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"autoretry_for must hold exception classes, got {item!r}")
    return types


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "max_retries":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _backoff(value: Any) -> float:
    """``retry_backoff``: False (no backoff), True (1 s base) or a base in seconds."""
    if value is True:
        return 1.0
    if value is False or value is None:
        return 0.0
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    raise ValueError(f"retry_backoff must be True, False or seconds >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how soon a task runs again after failing."""

    #: Exceptions that retry the task by themselves, without calling ``self.retry``.
    autoretry_for: tuple[type[BaseException], ...] = attrs.field(default=(), converter=_exception_types)
    #: Retries allowed after the first run; ``None`` retries for ever.
    max_retries: int | None = attrs.field(default=3, validator=_non_negative)
    #: Seconds before a retry when neither a countdown nor a backoff says otherwise.
    default_retry_delay: float = attrs.field(default=180.0, validator=_non_negative)
    #: Base of the exponential backoff in seconds (0: none); ``True`` means 1 s.
    retry_backoff: float = attrs.field(default=0.0, converter=_backoff)
    #: The longest backoff delay, in seconds.
    retry_backoff_max: float = attrs.field(default=600.0, validator=_non_negative)
    #: Full jitter: the delay is drawn uniformly from [0, backoff] so that tasks failing
    #: together do not all come back together.
    retry_jitter: bool = True

    @classmethod
    def of(cls, source: Any) -> RetryPolicy:
        """The policy named by ``source``'s attributes (a Task, or its class)."""
        return cls(**{name: getattr(source, name) for name in RETRY_OPTIONS})

    def exhausted(self, retries: int) -> bool:
        """Whether a run that is the ``retries``-th retry may not be retried again."""
        return self.max_retries is not None and retries >= self.max_retries

    def backoff(self, retries: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before the retry that follows the ``retries``-th retry: ``base * 2**retries``
        capped at ``retry_backoff_max``, and with jitter a uniform draw below that
        (``rand`` returns a float in [0, 1))."""
        delay = min(self.retry_backoff * 2.0 ** min(retries, 64), self.retry_backoff_max)
        return delay * rand() if self.retry_jitter else delay

    def autoretry_delay(self, retries: int, rand: Callable[[], float] = random.random) -> float:
        """The countdown of an automatic retry: the backoff when set, else the default delay."""
        return self.backoff(retries, rand) if self.retry_backoff else self.default_retry_delay
