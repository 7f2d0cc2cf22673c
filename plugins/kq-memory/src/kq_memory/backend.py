"""The ``memory://`` result backend: one store per process, shared by every instance.

Clients and workers in one process open their own backend instances, so the results live at
module level, not in the instance: that is what lets an eager or threaded worker's result
reach the client that waits for it. One condition variable guards the store and wakes waiters
the moment a result is stored, so :meth:`MemoryBackend.wait` never polls. Counters live beside
the results, and claims beside them, under the same condition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import ClassVar

from kq.backend import BackendCapabilities, ResultBackend, StoredResult
from kq.states import READY_STATES

from . import BACKEND_CAPABILITIES

#: task id -> (result, monotonic expiry time or None)
_results: dict[str, tuple[StoredResult, float | None]] = {}
#: counter name -> (value, monotonic expiry time or None)
_counters: dict[str, tuple[int, float | None]] = {}
#: claim name -> (holder, monotonic expiry time)
_claims: dict[str, tuple[str, float | None]] = {}
#: Guards the store and wakes waiters. Made on first use, not at import: kq imports plugins
#: before a green pool monkey-patches threading, and a condition made earlier would stay native
#: and block the gevent/eventlet hub.
_changed: threading.Condition | None = None
_making = threading.Lock()  # held only for the instant of making it, never across a yield


def _condition() -> threading.Condition:
    global _changed
    if _changed is None:
        with _making:
            if _changed is None:
                _changed = threading.Condition()
    return _changed


def _live(task_id: str, now: float) -> StoredResult | None:
    """The unexpired result of ``task_id``; the caller holds the condition."""
    entry = _results.get(task_id)
    if entry is None:
        return None
    result, expires = entry
    if expires is not None and expires <= now:
        return None
    return result


class MemoryBackend(ResultBackend):
    """Results in this process's memory, gone when it exits; the URL's host part is ignored."""

    capabilities: ClassVar[BackendCapabilities] = BACKEND_CAPABILITIES

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        expires = None if ttl is None else time.monotonic() + ttl
        changed = _condition()
        with changed:
            for result in results:
                _results[result.task_id] = (result, expires)
            changed.notify_all()

    def get(self, task_id: str) -> StoredResult | None:
        with _condition():
            return _live(task_id, time.monotonic())

    def wait(self, task_id: str, timeout: float | None) -> StoredResult | None:
        def ready() -> bool:
            found = _live(task_id, time.monotonic())
            return found is not None and found.state in READY_STATES

        changed = _condition()
        with changed:
            changed.wait_for(ready, timeout)
            return _live(task_id, time.monotonic())

    def forget(self, task_id: str) -> None:
        with _condition():
            _results.pop(task_id, None)

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        now = time.monotonic()
        with _condition():
            value, expiry = _counters.get(key, (0, None))
            if expiry is not None and expiry <= now:
                value = 0
            value += amount
            _counters[key] = (value, None if expires is None else now + expires)
        return value

    def delete_counter(self, key: str) -> None:
        with _condition():
            _counters.pop(key, None)

    def claim(self, key: str, value: str, expires: float) -> str | None:
        now = time.monotonic()
        with _condition():
            holder, expiry = _claims.get(key, (None, None))
            if holder is not None and expiry is not None and expiry > now:
                return holder
            _claims[key] = (value, now + expires)
        return None

    def release(self, key: str, value: str) -> None:
        with _condition():
            if _claims.get(key, (None, None))[0] == value:
                del _claims[key]

    def cleanup(self) -> int:
        now = time.monotonic()
        with _condition():
            expired = 0
            for store in (_results, _counters, _claims):
                keys = [k for k, (_, expires) in store.items() if expires is not None and expires <= now]
                for key in keys:
                    del store[key]
                expired += len(keys)
        return expired
