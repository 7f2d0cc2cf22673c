"""Unique tasks: a second publish of the same call while the first is pending or running returns
the first one's result handle instead of enqueueing a duplicate.

The publisher claims the task's key in the result backend (:meth:`ResultBackend.claim`, one
atomic step) with the new task's id before it publishes; a publisher that finds the key held
gets the holder's id back and returns a handle on it. The key travels in the message's
``kq_unique`` header, so whichever worker ends the task releases it right after storing a ready
result (:func:`release_for`); a claim whose task is lost still lapses after ``unique_for``.
Messages without the header cost the worker nothing but one dictionary lookup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .exceptions import KQError
from .protocol import TaskMessage

log = logging.getLogger("kq.unique")

#: The message header carrying the claimed key.
HEADER = "kq_unique"
#: Claims are named apart from anything else a backend holds.
CLAIM_PREFIX = "kq.unique:"


def call_key(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The key of ``name(*args, **kwargs)``: a hash of its canonical JSON (sorted keys, no
    spaces), so equal calls from any client get the same key whatever their keyword order."""
    try:
        canonical = json.dumps([name, list(args), kwargs], sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}: a unique task's arguments must be JSON data to make its key "
            f"(or pass unique_key=...): {exc}"
        ) from None
    return f"{name}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def send_unique(
    app: Any,
    name: str,
    key: str,
    unique_for: float,
    options: dict[str, Any],
    send: Callable[[dict[str, Any]], Any],
) -> Any:
    """Claim ``key`` for a new task id and ``send(options)`` with that id and the header; or,
    when another task holds the key, return a handle on that task without sending."""
    backend = app.backend
    if not backend.capabilities.claims:
        raise KQError(
            f"{name}: unique tasks need a result backend that keeps claims "
            f"(capabilities.claims), such as redis://, sqlite:// or db+postgresql://; "
            f"{app.conf.result_backend!r} does not"
        )
    task_id = options.get("task_id") or str(uuid.uuid4())
    holder = backend.claim(CLAIM_PREFIX + key, task_id, unique_for)
    if holder is not None and holder != task_id:
        return app.AsyncResult(holder, task_name=name)
    options["task_id"] = task_id
    options["headers"] = {**(options.get("headers") or {}), HEADER: key}
    try:
        return send(options)
    except BaseException:
        backend.release(CLAIM_PREFIX + key, task_id)  # nothing was sent: nothing holds the key
        raise


def release_for(app: Any, message: TaskMessage) -> None:
    """Free the key a unique task's message holds; a worker calls this once the task's ready
    result is stored (or it was skipped). Failing to release is logged, not raised: the claim
    lapses by itself after ``unique_for``."""
    key = message.extra_headers.get(HEADER)
    if not key:
        return
    try:
        app.backend.release(CLAIM_PREFIX + str(key), message.id)
    except Exception as exc:
        log.warning(
            "kq: could not release unique key %s of task %s (it lapses by itself): %s", key, message.id, exc
        )
