"""What happens when a step of a workflow ends: its callbacks, the next step of its chain, the
chord it is part of; on failure, its errbacks, and a FAILURE for every step that can no longer
run, so that nothing waits for them.

The worker's runner calls :func:`after_task` right after a task's result is stored, in the
pool's execution context (a thread, a child process, a greenlet, an asyncio pool's I/O thread).
Everything that one task's end sends goes out in one :class:`Batch`: chord member records
first, then every task in one ``send_many``.

Primitives (built in, and from plugins through ``kq_canvas_primitives``) take part in two ways:
the kernel rebuilds a signature mapping with the factory registered for its ``subtask_type``
and calls ``plan(batch, args, kwargs, options)`` on it; and a primitive whose result is not a
task's (a chord's join, a race's finish line) calls :func:`complete` or :func:`fail` with the
:class:`~kq.canvas.wire.Step` its options describe. :func:`succeeded` and :func:`failed` are
what follows a step whose result is already stored (by the runner, for a task).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..current import request_var
from ..exceptions import EncodeError
from ..protocol import ResultMeta, TaskMessage, utcnow
from ..result import save_groups
from ..states import SUCCESS
from . import chords
from .chords import Settled
from .wire import Call, Cause, Step, merge

log = logging.getLogger("kq.canvas")

#: A single call that ``send_many`` refuses for these is failed alone, not with its batch.
_BAD_CALL = (TypeError, ValueError, EncodeError)


class Batch:
    """What one apply (or one task's end) sends: member records, then every task at once."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[Call] = []
        self.groups: list[tuple[str, list[str]]] = []

    def send(self, call: Call) -> None:
        self.calls.append(call)

    def save_group(self, group_id: str, member_ids: Sequence[str]) -> None:
        """Record a chord header's members; stored before any task of the batch is sent."""
        self.groups.append((group_id, list(member_ids)))

    def flush(self, isolate: bool = True) -> list[tuple[Call, Exception]]:
        """Store the records, then send the calls.

        A call ``send_many`` refuses (bad arguments, a value that cannot be encoded) fails the
        whole batch before anything is sent; with ``isolate`` the calls are then sent one by
        one and the refused ones returned, each with its error, instead of raising. Broker and
        backend outages raise, after the app's own retries."""
        if self.groups:
            save_groups(self.app, self.groups)
            self.groups = []
        refused: list[tuple[Call, Exception]] = []
        if self.calls:
            try:
                self.app.send_many(self.calls)
            except _BAD_CALL:
                if not isolate:
                    raise
                for call in self.calls:
                    try:
                        self.app.send_many([call])
                    except _BAD_CALL as exc:
                        refused.append((call, exc))
            self.calls = []  # kept until sent: what an outage leaves here was not sent
        return refused


def primitive(app: Any, signature: Mapping[str, Any]) -> Any:
    """Rebuild a composite signature mapping with the factory registered for its type."""
    kind = signature["subtask_type"]
    if not isinstance(kind, str):
        raise ValueError(
            f"signature {signature.get('task')!r}: subtask_type must be a string, got {type(kind).__name__}"
        )
    return app.plugins.canvas_primitives.get(kind).factory(signature, app)


def apply(
    batch: Batch,
    signature: Mapping[str, Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Apply a signature mapping from a message: a task call joins the batch, a primitive plans
    itself into it. Options kq does not know (Celery's ``reply_to``, ...) are dropped."""
    if signature.get("subtask_type"):
        primitive(batch.app, signature).plan(batch, tuple(args), dict(kwargs or {}), dict(options or {}))
    else:
        batch.send(merge(signature, args, kwargs, options, lenient=True))


def _apply_or_skip(
    batch: Batch, signature: Mapping[str, Any], args: Sequence[Any], options: Mapping[str, Any] | None = None
) -> None:
    """:func:`apply`; a step that cannot even be applied (malformed, unknown primitive, bad
    arguments) is failed with that error instead, and so is everything after it."""
    try:
        apply(batch, signature, args, None, options)
    except Exception as exc:
        log.error("kq: workflow step %s cannot run: %r", signature.get("task"), exc)
        own = signature.get("options")
        own = dict(own) if isinstance(own, Mapping) else {}  # a hostile message's may be anything
        cause = Cause.of_exception(_culprit(own), exc, traceback.format_exc())
        skip(batch, {**signature, "options": {**own, **(options or {})}}, cause, set())


def _culprit(options: Mapping[str, Any]) -> str:
    """The id to name for a step that could not be sent: its own, else the finished task's."""
    task_id = options.get("task_id")
    if isinstance(task_id, str):
        return task_id
    request = request_var.get()
    return request.id if request is not None else "unknown"


def succeeded(batch: Batch, step: Step, value: Any) -> None:
    """The step produced ``value``: callbacks and the next chain step get it first, and the
    chord it is part of counts it."""
    for callback in step.callbacks:
        _apply_or_skip(batch, callback, (value,))
    if step.chain:
        rest = list(step.chain[:-1])
        _apply_or_skip(batch, step.chain[-1], (value,), {"chain": rest} if rest else None)
    if step.chord is not None:
        settled = chords.part_succeeded(batch.app, step)
        if settled is not None:
            settle(batch, settled)


def failed(batch: Batch, step: Step, cause: Cause, seen: set[str] | None = None) -> None:
    """The step failed (its own result is stored): its errbacks run with the id of the task
    that raised, every later step of its chain is stored as FAILURE, and its chord fails.

    ``seen`` holds the errbacks already run for this failure, so one errback linked to several
    parts of a workflow (a group's members) runs once per failure."""
    seen = set() if seen is None else seen
    for errback in step.errbacks:
        key = json.dumps(errback, sort_keys=True, default=repr)
        if key not in seen:
            seen.add(key)
            _apply_or_skip(batch, errback, (cause.task_id,))
    for later in reversed(step.chain):
        skip(batch, later, cause, seen)
    if step.chord is not None:
        settled = chords.part_failed(batch.app, step, cause)
        if settled is not None:
            settle(batch, settled, seen)


def skip(batch: Batch, signature: Mapping[str, Any], cause: Cause, seen: set[str]) -> None:
    """A step that will not run because of ``cause``: store FAILURE under its result id (in its
    options) and pass the failure on to what follows it."""
    options = signature.get("options") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f"signature {signature.get('task')!r}: options must be a mapping")
    fail(batch, Step.of_options(options), cause, signature.get("task"), seen)


def complete(batch: Batch, step: Step, value: Any, name: str | None = None) -> None:
    """A step produced ``value`` without a task running it: store it as the step's result and
    go on as :func:`succeeded` does."""
    if step.task_id and batch.app.conf.result_backend:
        meta = ResultMeta(task_id=step.task_id, state=SUCCESS, result=value, date_done=utcnow(), name=name)
        batch.app.store_result(meta, step.reply_to)
    succeeded(batch, step, value)


def fail(
    batch: Batch, step: Step, cause: Cause, name: str | None = None, seen: set[str] | None = None
) -> None:
    """A step failed with ``cause`` without a task of its own raising it: store the FAILURE as
    the step's result and go on as :func:`failed` does."""
    if step.task_id and batch.app.conf.result_backend:
        batch.app.store_result(cause.failure_of(step.task_id, name), step.reply_to)
    failed(batch, step, cause, seen)


def settle(batch: Batch, settled: Settled, seen: set[str] | None = None) -> None:
    """Run a chord's body with the header's values, or fail it."""
    if settled.cause is None:
        _apply_or_skip(batch, settled.body, (settled.values,))
    else:
        skip(batch, settled.body, settled.cause, set() if seen is None else seen)


def proceed(app: Any, step: Step, value: Any = None, cause: Cause | None = None) -> None:
    """Everything after one step, sent in one batch (see :func:`_run`)."""
    if cause is None:
        _run(app, f"task {step.task_id}", lambda batch: succeeded(batch, step, value))
    else:
        _run(app, f"task {step.task_id}", lambda batch: failed(batch, step, cause))


def resolve(app: Any, settled: Settled) -> None:
    """Run or fail a chord's body now (how the unlock task ends)."""
    _run(app, "a chord", lambda batch: settle(batch, settled))


def _run(app: Any, what: str, fill: Callable[[Batch], None]) -> None:
    """Fill a batch and send it. A call that cannot be sent is failed in place, with what
    follows it, so that no later step is left waiting for it."""
    batch = Batch(app)
    try:
        fill(batch)
        refused = batch.flush()
    except ValueError as exc:  # the workflow is malformed (a hostile message's): no kq bug to trace
        log.error("kq: the workflow after %s could not go on: %s", what, exc)
        refused = [(call, exc) for call in batch.calls]
    except Exception as exc:
        log.exception("kq: the workflow after %s could not go on", what)
        refused = [(call, exc) for call in batch.calls]
    if refused:
        _abandon(app, refused)


def _abandon(app: Any, refused: list[tuple[Call, Exception]]) -> None:
    batch = Batch(app)
    try:
        for call, exc in refused:
            cause = Cause.of_exception(_culprit(call.options), exc)
            skip(batch, {"task": call.task, "options": call.options}, cause, set())
        batch.flush()
    except ValueError as exc:  # a step's options say nothing usable (a hostile message's)
        log.error("kq: could not mark %d unsent workflow steps as failed: %s", len(refused), exc)
    except Exception:
        log.exception("kq: could not mark %d unsent workflow steps as failed", len(refused))


def after_task(
    app: Any, message: TaskMessage, request: Any, *, value: Any = None, cause: Cause | None = None
) -> None:
    """Called by the runner once a task's outcome is stored: ``value`` on success, ``cause`` on
    failure. Sends what the message's workflow says comes next, as children of ``request``.
    Never raises: a malformed workflow is logged and goes no further."""
    try:
        step = Step.of_message(message)
    except ValueError as exc:
        log.error(
            "kq: task %s[%s] carries a malformed workflow; nothing after it runs: %s",
            message.task,
            message.id,
            exc,
        )
        return
    if step is None:
        return
    token = request_var.set(request)
    try:
        proceed(app, step, value, cause)
    finally:
        request_var.reset(token)
