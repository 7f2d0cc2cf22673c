"""Workflow steps as they travel: Celery's signature mapping, the options a call carries, and
how a failure is passed on to the steps it stops.

A signature travels as Celery's mapping ``{"task", "args", "kwargs", "options",
"subtask_type", "immutable", "chord_size"}``; a message's ``embed`` holds lists of them
(``callbacks``, ``errbacks``, ``chain`` with the next step last) and the ``chord`` body. This
module sits at the protocol's layer, below the task and app modules, so that both the worker's
continuation and the :class:`~kq.Signature` classes above can build on the same definitions.
Everything read from a message is untrusted: the readers here raise ``ValueError`` for shapes
they cannot use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..protocol import ResultMeta, TaskMessage, exception_to_meta, is_text, utcnow
from ..states import FAILURE

#: Options that say how and when one call runs.
EXECUTION_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "expires",
        "queue",
        "priority",
        "task_id",
        "headers",
        "serializer",
        "compression",
        "ignore_result",
        "time_limit",
        "soft_time_limit",
    }
)
#: Options that place a call in a workflow: what runs after it, and the chord it is part of.
WORKFLOW_OPTIONS = frozenset({"link", "link_error", "chain", "chord", "group_id", "group_index"})
#: Everything ``apply_async`` accepts; anything else is a TypeError naming it.
CALL_OPTIONS = EXECUTION_OPTIONS | WORKFLOW_OPTIONS
#: What a composite signature hands to the step that produces its result: the result's id and
#: everything that must happen once that result exists.
RESULT_OPTIONS = WORKFLOW_OPTIONS | {"task_id"}
#: The key, in a stored exception, naming the task that raised it when the result it is stored
#: under belongs to a step that never ran because of it.
RAISED_BY = "raised_by"


def as_mapping(value: Any) -> dict[str, Any]:
    """One signature as a mapping: a :class:`~kq.Signature` (anything with ``to_dict``) or a
    mapping with a string ``task``."""
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None:
        mapping: dict[str, Any] = to_dict()
        return mapping
    if not isinstance(value, Mapping) or not isinstance(value.get("task"), str):
        raise ValueError(f"not a signature: {value!r:.200}")
    return dict(value)


def as_mappings(value: Any) -> list[dict[str, Any]] | None:
    """``None``, one signature or a sequence of them, as a list of mappings (``None`` if empty)."""
    if value is None:
        return None
    if isinstance(value, Mapping) or hasattr(value, "to_dict"):
        return [as_mapping(value)]
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(f"expected a list of signatures, got {type(value).__name__}")
    return [as_mapping(item) for item in value] or None


@attrs.frozen
class Call:
    """One task to send: what :meth:`kq.App.send_many` takes."""

    task: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    options: Mapping[str, Any]


def merge(
    signature: Mapping[str, Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    lenient: bool = False,
) -> Call:
    """The call a signature makes when applied with more arguments and options.

    Arguments given now go before the signature's own (partial application: a chain passes the
    previous result first); an immutable signature ignores them. Options given now win.
    ``lenient`` drops option names kq does not know (a signature written by Celery carries some,
    such as ``reply_to``) instead of raising.
    """
    task = signature.get("task")
    own_args, own_kwargs = signature.get("args") or (), signature.get("kwargs") or {}
    own_options = signature.get("options") or {}
    if not isinstance(task, str) or not task:
        raise ValueError(f"signature without a task name: {signature!r:.200}")
    if not isinstance(own_args, Sequence) or isinstance(own_args, (str, bytes)):
        raise ValueError(f"signature {task}: args must be a list")
    if not isinstance(own_kwargs, Mapping) or not isinstance(own_options, Mapping):
        raise ValueError(f"signature {task}: kwargs and options must be mappings")
    if signature.get("immutable"):
        args, kwargs = tuple(own_args), dict(own_kwargs)
    else:
        args, kwargs = (*args, *own_args), {**own_kwargs, **(kwargs or {})}
    merged = {**own_options, **(options or {})}
    unknown = merged.keys() - CALL_OPTIONS
    if unknown:
        if not lenient:
            raise TypeError(f"{task}: unknown option(s) {sorted(unknown)}; accepted: {sorted(CALL_OPTIONS)}")
        merged = {k: v for k, v in merged.items() if k in CALL_OPTIONS}
    return Call(task, tuple(args), kwargs, merged)


@attrs.frozen
class Step:
    """What must happen once one step of a workflow has a result: the id the result is stored
    under, the callbacks and errbacks, the rest of the chain (next step last), and the chord
    (its body and header id) the step is a header member of."""

    task_id: str | None = None
    callbacks: tuple[Mapping[str, Any], ...] = ()
    errbacks: tuple[Mapping[str, Any], ...] = ()
    chain: tuple[Mapping[str, Any], ...] = ()
    chord: Mapping[str, Any] | None = None
    group_id: str | None = None
    reply_to: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.chord is not None and not self.group_id:
            raise ValueError(f"step {self.task_id} is in a chord but has no group id")

    @classmethod
    def of_message(cls, message: TaskMessage) -> Step | None:
        """The step a task message is, or ``None`` when nothing follows it (the common case)."""
        if not (message.callbacks or message.errbacks or message.chain or message.chord):
            return None
        return cls(
            task_id=message.id,
            callbacks=tuple(as_mappings(message.callbacks) or ()),
            errbacks=tuple(as_mappings(message.errbacks) or ()),
            chain=tuple(as_mappings(message.chain) or ()),
            chord=as_mapping(message.chord) if message.chord else None,
            group_id=message.group,
            reply_to=message.reply_to,
        )

    @classmethod
    def of_options(cls, options: Mapping[str, Any]) -> Step:
        """The step a signature's options describe (for steps that no task message carries)."""
        task_id, group_id = options.get("task_id"), options.get("group_id")
        if any(value is not None and not is_text(value) for value in (task_id, group_id)):
            raise ValueError("options task_id and group_id must be UTF-8 text")
        chord = options.get("chord")
        return cls(
            task_id=task_id,
            callbacks=tuple(as_mappings(options.get("link")) or ()),
            errbacks=tuple(as_mappings(options.get("link_error")) or ()),
            chain=tuple(as_mappings(options.get("chain")) or ()),
            chord=as_mapping(chord) if chord else None,
            group_id=group_id,
        )


@attrs.frozen
class Cause:
    """Why a step failed: the task that raised, its exception (as result metas carry it) and
    its traceback. Steps that do not run because of it are stored as FAILURE with the same
    exception, so ``get()`` on any of them raises what the task raised."""

    task_id: str
    exception: Mapping[str, Any]
    traceback: str | None = None

    @classmethod
    def of_exception(cls, task_id: str, exc: BaseException, traceback: str | None = None) -> Cause:
        return cls(task_id, exception_to_meta(exc), traceback)

    @classmethod
    def of_meta(cls, meta: ResultMeta) -> Cause:
        """The cause recorded in a failed result (the original one, if it was passed on)."""
        data = (
            meta.result
            if isinstance(meta.result, Mapping)
            else exception_to_meta(
                RuntimeError(f"task {meta.task_id} ended {meta.state}: {meta.result!r:.200}")
            )
        )
        raised_by = data.get(RAISED_BY)
        exception = {k: v for k, v in data.items() if k != RAISED_BY}
        return cls(raised_by if isinstance(raised_by, str) else meta.task_id, exception, meta.traceback)

    def failure_of(self, task_id: str, name: str | None = None) -> ResultMeta:
        """The FAILURE stored for ``task_id``, a step that did not run because of this cause."""
        note = f"task {task_id} did not run: task {self.task_id} failed"
        return ResultMeta(
            task_id=task_id,
            state=FAILURE,
            result={**self.exception, RAISED_BY: self.task_id},
            traceback=f"{self.traceback or ''}{note}\n",
            date_done=utcnow(),
            name=name,
        )
