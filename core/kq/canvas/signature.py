"""Signatures: a task call as data, to send later, to compose into workflows, to carry in messages.

``add.s(2, 2)`` is a :class:`Signature`; ``add.si(2, 2)`` an immutable one (a chain does not
pass it the previous result). Composite signatures (chain, group, chord, chunks and plugins'
primitives) are subclasses with their own ``subtask_type``; each is serialized as Celery's
signature mapping and rebuilt from it by the factory registered for its type through the
``kq_canvas_primitives`` hook, so a Celery worker can read kq's signatures and the other way
round.

A signature is applied in two steps: :meth:`Signature.freeze` fixes the ids of every result it
will produce (so the caller gets its result handles at once), and :meth:`Signature.plan` adds
the task calls it needs now to a :class:`~kq.canvas.continuation.Batch`, which sends them all
in one ``send_many``. Composites hand the options that say what follows them (``RESULT_OPTIONS``)
to the step that produces their result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from ..current import current_app
from ..exceptions import KQError
from ..result import AsyncResult, EagerResult, GroupResult
from .continuation import Batch
from .wire import CALL_OPTIONS, as_mapping, as_mappings, merge

#: Options holding signatures, serialized as Celery does: lists, except the chord body.
_SIGNATURE_LIST_OPTIONS = ("link", "link_error", "chain")


def _task_name(task: Any) -> str:
    name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"a signature needs a task or a task name, got {task!r:.100}")
    return name


def _to_dict(value: Any) -> dict[str, Any]:
    return dict(value or {})


def check_options(where: str, options: Mapping[str, Any]) -> None:
    unknown = options.keys() - CALL_OPTIONS
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {sorted(unknown)}; accepted: {sorted(CALL_OPTIONS)}")


def options_to_dict(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options with every signature in them as a mapping."""
    found = dict(options)
    for key in _SIGNATURE_LIST_OPTIONS:
        if found.get(key) is not None:
            found[key] = as_mappings(found[key]) or []
    if found.get("chord") is not None:
        found["chord"] = as_mapping(found["chord"])
    return found


def root_of(result: AsyncResult | GroupResult) -> AsyncResult | GroupResult:
    """The first result of a chain of ``parent`` links."""
    while result.parent is not None:
        result = result.parent
    return result


@attrs.define
class Signature:
    """One task call: the task's name, arguments and ``apply_async`` options."""

    #: ``None`` for a task call; a composite's type name, under which its factory is registered.
    subtask_type: ClassVar[str | None] = None

    task: str = attrs.field(converter=_task_name)
    args: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
    kwargs: dict[str, Any] = attrs.field(factory=dict, converter=_to_dict)
    options: dict[str, Any] = attrs.field(factory=dict, converter=_to_dict)
    #: An immutable signature ignores arguments given when it is applied (a chain's previous
    #: result, a chord's header values).
    immutable: bool = False
    #: Set on a chord's body as it travels: how many header tasks the chord counts.
    chord_size: int | None = None
    app: Any = attrs.field(default=None, eq=False, repr=False)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{'%' if self.immutable else ''}{self.task}({', '.join(parts)})"

    @property
    def id(self) -> str | None:
        """The id the result will be stored under, once frozen."""
        return self.options.get("task_id")

    @property
    def name(self) -> str:
        return self.task

    def _app(self) -> Any:
        return self.app if self.app is not None else current_app()

    # -- building -------------------------------------------------------------------------

    def set(self, **options: Any) -> Signature:
        """Add ``apply_async`` options (``queue``, ``countdown``, ...); returns the signature."""
        check_options(self.task, options)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool = True) -> Signature:
        self.immutable = immutable
        return self

    def link(self, callback: Signature | Mapping[str, Any]) -> Signature:
        """Apply ``callback`` with this signature's result once it succeeds (first argument).
        Returns this signature (Celery returns the callback)."""
        return self._append("link", callback)

    def link_error(self, errback: Signature | Mapping[str, Any]) -> Signature:
        """Apply ``errback`` with the id of the task that raised if this signature fails (or a
        step before it, inside a workflow); returns this signature."""
        return self._append("link_error", errback)

    on_error = link_error

    def _append(self, key: str, signature: Any) -> Signature:
        self.options[key] = [*(self.options.get(key) or ()), signature]
        return self

    def __or__(self, other: Signature) -> Signature:
        """``a | b``: a chain (a group followed by a step becomes a chord)."""
        if not isinstance(other, Signature):
            return NotImplemented
        return self.primitive("chain", tasks=[self, other])

    def primitive(self, kind: str, **kwargs: Any) -> Signature:
        """Build a registered composite (``chain``, ``chord``, a plugin's) from its parts."""
        mapping = {"task": kind, "args": [], "kwargs": kwargs, "options": {}, "subtask_type": kind}
        composite: Signature = self._app().plugins.canvas_primitives.get(kind).factory(mapping, self.app)
        return composite

    def clone(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A deep copy, with more partial arguments and options when given."""
        copy = self._copy()
        if not copy.immutable:
            copy.args = (*args, *copy.args)
            copy.kwargs.update(kwargs or {})
        copy.options.update(options)
        return copy

    def _copy(self) -> Signature:
        """What a round trip through Celery's mapping gives (nested signatures in the options
        become mappings), built directly for a plain call: a group of 1,000 is cloned on every
        ``apply_async``, and the round trip was a fifth of its cost."""
        if type(self) is not Signature:
            return type(self).from_dict(self.to_dict(), self.app)
        return Signature(
            self.task,
            self.args,
            self.kwargs,
            options_to_dict(self.options),
            immutable=self.immutable,
            chord_size=self.chord_size,
            app=self.app,
        )

    # -- the wire format ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Celery's signature mapping, with every nested signature as a mapping too."""
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": self._kwargs_to_dict(),
            "options": options_to_dict(self.options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
            "chord_size": self.chord_size,
        }

    def _kwargs_to_dict(self) -> dict[str, Any]:
        """Composites keep signatures in ``kwargs``; they serialize them here."""
        return dict(self.kwargs)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], app: Any = None) -> Signature:
        """Rebuild a signature; a composite through the factory registered for its type."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"not a signature mapping: {mapping!r:.200}")
        kind = mapping.get("subtask_type")
        if kind and cls is Signature:
            app = app if app is not None else current_app()
            composite: Signature = app.plugins.canvas_primitives.get(kind).factory(mapping, app)
            return composite
        args, kwargs, options = (mapping.get(key) for key in ("args", "kwargs", "options"))
        if not isinstance(args, (Sequence, type(None))) or isinstance(args, (str, bytes)):
            raise ValueError(f"signature {mapping.get('task')!r}: args must be a list")
        if not isinstance(kwargs, (Mapping, type(None))) or not isinstance(options, (Mapping, type(None))):
            raise ValueError(f"signature {mapping.get('task')!r}: kwargs and options must be mappings")
        return cls(
            mapping.get("task"),
            args or (),
            kwargs,
            options,
            immutable=bool(mapping.get("immutable")),
            chord_size=mapping.get("chord_size"),
            app=app,
        )

    # -- running --------------------------------------------------------------------------

    def freeze(self) -> AsyncResult | GroupResult:
        """Fix the id(s) of the result(s) this signature will produce and return the handle."""
        task_id = self.options.setdefault("task_id", str(uuid.uuid4()))
        return AsyncResult(task_id, app=self._app(), task_name=self.task)

    def plan(
        self,
        batch: Batch,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Add the calls that start this signature, applied with ``args``, ``kwargs`` and
        ``options`` (which win over its own), to ``batch``. Called on a copy: may change it."""
        batch.send(
            merge(
                {
                    "task": self.task,
                    "args": self.args,
                    "kwargs": self._kwargs_to_dict(),
                    "options": self.options,
                    "immutable": self.immutable,
                },
                args,
                kwargs,
                options,
            )
        )

    def apply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult | GroupResult:
        """Send it: every task it starts now goes out in one batch. Returns the result handle
        (a chain's last result, with earlier ones as ``.parent``; a group's GroupResult)."""
        check_options(self.task, options)
        signature = self.clone()
        if "task_id" in options:
            signature.options["task_id"] = options.pop("task_id")
        result = signature.freeze()
        batch = Batch(signature._app())
        signature.plan(batch, tuple(args or ()), dict(kwargs or {}), options)
        batch.flush(isolate=False)
        return result

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult | GroupResult:
        """Send it with these partial arguments; shortcut for :meth:`apply_async`."""
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now with these partial arguments, as calling the task does."""
        call = merge(self.to_dict(), args, kwargs, lenient=True)
        return self._app().tasks[self.task](*call.args, **call.kwargs)

    def apply(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> EagerResult:
        """Run the task here, as a worker would (``Task.apply``); not for composites."""
        if self.subtask_type:
            raise KQError(f"a {self.subtask_type} runs through workers only; use apply_async()")
        call = merge(self.to_dict(), args, kwargs, lenient=True)
        result: EagerResult = (
            self._app().tasks[self.task].apply(call.args, call.kwargs, task_id=call.options.get("task_id"))
        )
        return result


def signature(
    task: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    app: Any = None,
    **options: Any,
) -> Signature:
    """A signature from a task (or its name) and arguments, from a signature mapping (Celery's
    or kq's, composites included), or a copy of a signature."""
    if isinstance(task, Signature):
        return task.clone()
    if isinstance(task, Mapping):
        return Signature.from_dict(task, app)
    check_options(_task_name(task), options)
    return Signature(task, args, kwargs, options, app=app)


def as_signature(value: Any, app: Any = None) -> Signature:
    """A signature given as one, as a mapping, or as a task (or task name) with no arguments."""
    if isinstance(value, Signature):
        return value
    if isinstance(value, Mapping):
        return Signature.from_dict(value, app)
    return Signature(value, app=app if app is not None else getattr(value, "app", None))
