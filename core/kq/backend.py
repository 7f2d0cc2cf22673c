"""The result backend interface: where task outcomes are kept until a client reads them.

The kernel encodes each outcome into bytes (Celery's result-meta format, with the app's result
serializer) before it reaches the backend, so a backend stores and returns opaque payloads keyed
by task id. That keeps backends small and makes every backend store the same thing.

Contract (checked by :class:`kq.testing.contracts.BackendContract`): a stored result is readable
by any process with the same URL; a later store for the same id replaces the earlier one; an
expired result reads as missing; backends are safe to use from several threads at once.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from .states import READY_STATES


@attrs.frozen
class StoredResult:
    """One task's outcome as a backend keeps it."""

    task_id: str
    state: str
    #: The encoded result meta; the backend stores it as it is.
    payload: bytes
    #: The caller's reply queue (from the task message), for backends with
    #: ``capabilities.reply_to``; others ignore it.
    reply_to: str | None = None


@attrs.frozen
class BackendCapabilities:
    """What a backend can do natively."""

    #: :meth:`ResultBackend.wait` is woken by the store itself (pub/sub, LISTEN/NOTIFY, a
    #: condition variable) instead of polling.
    push: bool = False
    #: Results vanish by themselves after their ``ttl`` (Redis EXPIRE); :meth:`cleanup` is a no-op.
    native_expiry: bool = False
    #: Results are visible to other processes and machines (False for in-process memory).
    shared: bool = True
    #: Results travel back to the caller (RPC style) rather than being kept under their id: the
    #: client names its queue with :meth:`ResultBackend.reply_queue`, the kernel puts it in each
    #: message's ``reply_to``, and the worker's ``store_many`` receives it in
    #: ``StoredResult.reply_to``. Such results can be read only by the client that sent the task.
    #: The app passes its own broker URL to such a backend as the ``broker_url`` option (unless
    #: ``result_backend_options`` sets one), so ``rpc://`` means "through the app's broker".
    reply_to: bool = False
    #: :meth:`ResultBackend.incr` and :meth:`ResultBackend.delete_counter` work, atomically across
    #: every process and machine sharing the backend's URL (within one process for a backend that
    #: is not ``shared``). Chords count their finished header tasks with it; global rate limits
    #: count calls.
    counters: bool = False
    #: :meth:`ResultBackend.claim` and :meth:`ResultBackend.release` work, atomically across every
    #: process sharing the URL. Unique tasks hold their key with it.
    claims: bool = False


class ResultBackend(abc.ABC):
    """Base class of every result backend. Subclasses set :attr:`capabilities`."""

    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities()

    #: Polling interval bounds for the default :meth:`wait`, in seconds.
    poll_min: ClassVar[float] = 0.005
    poll_max: ClassVar[float] = 0.2

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})

    @abc.abstractmethod
    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        """Store these results, replacing earlier ones with the same id, in as few round trips as
        the backend allows. ``ttl`` is seconds until they may be forgotten; ``None`` keeps them."""

    def store(self, result: StoredResult, ttl: float | None) -> None:
        """Store one result."""
        self.store_many([result], ttl)

    @abc.abstractmethod
    def get(self, task_id: str) -> StoredResult | None:
        """Return the stored result for ``task_id``, or ``None`` if there is none (or it expired)."""

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """Return the stored results of ``task_ids`` in the same order, ``None`` for each one that
        is missing or expired (a chord body reads all its header results at once).

        The default calls :meth:`get` once per id; a backend that can read many keys in one round
        trip should override it, splitting very long lists into chunks its server accepts.
        """
        return [self.get(task_id) for task_id in task_ids]

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        """Block until the result of ``task_id`` is in a ready state; return it, or the latest
        (possibly ``None``) when ``timeout`` seconds pass.

        The default polls with a growing interval; backends with ``capabilities.push`` override it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = self.poll_min
        while True:
            found = self.get(task_id)
            if found is not None and found.state in READY_STATES:
                return found
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return found
                interval = min(interval, remaining)
            time.sleep(interval)
            interval = min(interval * 1.5, self.poll_max)

    def reply_queue(self) -> str | None:
        """For ``capabilities.reply_to`` backends: the queue this client's results come back on."""
        return None

    @abc.abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete the result of ``task_id`` if there is one."""

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        """Add ``amount`` (which may be negative or zero) to the counter ``key`` and return the
        new value; a counter that does not exist, or has expired, counts from 0.

        What a backend declaring ``capabilities.counters`` must guarantee:

        - Atomicity: the read and the write are one indivisible step for every process and
          machine using the same URL, so concurrent calls never lose an increment and each
          returns a distinct running value (``n`` increments of 1 return exactly 1..n between
          them). A chord fires its body when the value reaches the header's size; a lost or
          repeated value would run it never or twice.
        - Namespace: counters are kept apart from results; a counter may be named like a task id
          without either touching the other.
        - Expiry: with ``expires`` (seconds), the counter may vanish that long after this call,
          each call pushing the moment back (Redis ``PEXPIRE``); a backend without native expiry
          keeps an expiry time that every ``incr`` honours and :meth:`cleanup` deletes after.
          ``expires=None`` keeps the counter until :meth:`delete_counter`, dropping any expiry an
          earlier call set.
        """
        raise NotImplementedError(self._no_counters())

    def delete_counter(self, key: str) -> None:
        """Delete the counter ``key`` if there is one, so that it counts from 0 again (a finished
        chord drops its counter). Backends declaring ``capabilities.counters`` implement it."""
        raise NotImplementedError(self._no_counters())

    def claim(self, key: str, value: str, expires: float) -> str | None:
        """Set ``key`` to ``value`` unless it is set; return ``None`` when this call set it, else
        the value that holds it. Backends declaring ``capabilities.claims`` implement it.

        The check and the write are one indivisible step for every process using the URL: of
        many concurrent claims of a free key exactly one returns ``None`` and every other
        returns that one's value (a second publish of a unique task returns the first one's
        handle). The claim vanishes ``expires`` seconds after it was made, or at :meth:`release`;
        an expired claim reads as free. Claims are kept apart from results and counters.
        """
        raise NotImplementedError(self._no_claims())

    def release(self, key: str, value: str) -> None:
        """Drop the claim on ``key`` if ``value`` still holds it (a claim that expired and was
        taken by another value is left alone). Backends declaring ``capabilities.claims``
        implement it."""
        raise NotImplementedError(self._no_claims())

    def _no_claims(self) -> str:
        return (
            f"{type(self).__name__} keeps no claims (capabilities.claims is False); use a "
            f"result backend that does, such as redis://, sqlite:// or db+postgresql://"
        )

    def _no_counters(self) -> str:
        return (
            f"{type(self).__name__} keeps no counters (capabilities.counters is False); use a "
            f"result backend that does, such as redis://, sqlite:// or db+postgresql://"
        )

    def cleanup(self) -> int:
        """Delete expired results (and expired counters and claims); return how many. Backends with native
        expiry keep the default."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


@attrs.frozen
class BackendSpec:
    """A result backend, as a plugin declares it in ``kq_result_backends``."""

    #: URL schemes this backend serves (``("db+postgresql",)``); each may be claimed once.
    schemes: tuple[str, ...] = attrs.field(converter=tuple[str, ...])
    #: Called as ``factory(url, options)`` with the backend URL and ``result_backend_options``.
    factory: Callable[[str, Mapping[str, Any]], ResultBackend]
    #: Defaults to the factory's own ``capabilities`` attribute (the interface class declares
    #: them once); a factory that is a plain function must pass them here.
    capabilities: BackendCapabilities = attrs.field(
        default=attrs.Factory(
            lambda spec: getattr(spec.factory, "capabilities", None) or BackendCapabilities(), takes_self=True
        )
    )
    description: str = ""
