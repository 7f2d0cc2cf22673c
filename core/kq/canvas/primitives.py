"""The built-in composites: chain, group, chord, and the join that lets a group stand as one step.

They nest freely. How each places what follows it (``RESULT_OPTIONS``: the result id, links,
the rest of an outer chain, an outer chord's membership):

- a **chain** sends its first step, carrying the other steps (next one last) in its message;
  what follows the chain goes to its last step;
- a **group** sends every member at once; what follows it goes to every member (links), or,
  when the group must yield one result (followed by a chain step, or a chord's header member),
  the group becomes the header of a chord: with the next step as body, or with a *join* that
  stores the list of results under the group's id;
- a **chord** records its header's member ids, sends the header with the body in each
  message, and gives what follows it to the body (see :mod:`kq.canvas.chords` for how the body
  runs exactly once).

Every task of one apply goes out in one ``send_many``; each message carries only what follows
it, so nested workflows cost one message per task, however deep.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from ..result import AsyncResult, GroupResult
from .chords import check_backend, unlock_call
from .continuation import Batch, complete
from .signature import Signature, as_signature, options_to_dict, root_of
from .wire import RESULT_OPTIONS, Step, as_mappings


def _split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(execution options, the options saying what follows the result)."""
    own = {k: v for k, v in options.items() if k not in RESULT_OPTIONS}
    return own, {k: v for k, v in options.items() if k in RESULT_OPTIONS}


def _route(signature: Signature, follows: Mapping[str, Any]) -> None:
    """Make ``signature`` the step that produces a composite's result: give it what follows."""
    for key in ("task_id", "chord", "group_id", "group_index", "chain"):
        if key in follows:
            signature.options[key] = follows[key]
    for key in ("link", "link_error"):
        if follows.get(key):
            signature.options[key] = [
                *(as_mappings(signature.options.get(key)) or ()),
                *(as_mappings(follows[key]) or ()),
            ]


def _members(tasks: tuple[Any, ...]) -> Iterable[Any]:
    """``f(a, b)`` and ``f([a, b])`` (or a generator) both mean the members a and b."""
    if len(tasks) == 1 and not isinstance(tasks[0], (Signature, Mapping)):
        return cast("Iterable[Any]", tasks[0])
    return tasks


def kwargs_of(mapping: Mapping[str, Any], *keys: str) -> list[Any]:
    """The parts a composite keeps in its mapping's ``kwargs`` (Celery's layout), checked."""
    kwargs = mapping.get("kwargs")
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{mapping.get('subtask_type')} signature: kwargs must be a mapping")
    return [kwargs.get(key) for key in keys]


class chain(Signature):
    """Steps run one after another, each getting the previous result as its first argument:
    ``chain(a.s(), b.s(), c.s())``, or ``a.s() | b.s() | c.s()``. A group followed by a step
    is a chord."""

    subtask_type = "chain"

    def __init__(
        self, *tasks: Any, app: Any = None, options: Mapping[str, Any] | None = None, **more: Any
    ) -> None:
        steps: list[Signature] = []
        for task in _members(tasks):
            step = as_signature(task, app)
            if isinstance(step, chain) and step.options.keys() <= {"task_id"}:
                steps.extend(step.tasks)  # a plain nested chain is just more steps
            elif steps and isinstance(steps[-1], group):
                steps[-1] = chord(steps[-1], step, app=app)
            else:
                steps.append(step)
        if not steps:
            raise ValueError("a chain needs at least one step")
        super().__init__("celery.chain", (), {"tasks": steps}, {**(options or {}), **more}, app=app)

    def __repr__(self) -> str:
        return " | ".join(repr(step) for step in self.tasks)

    @property
    def tasks(self) -> list[Signature]:
        return cast("list[Signature]", self.kwargs["tasks"])

    def _kwargs_to_dict(self) -> dict[str, Any]:
        return {"tasks": [step.to_dict() for step in self.tasks]}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], app: Any = None) -> chain:
        (tasks,) = kwargs_of(mapping, "tasks")
        if not isinstance(tasks, Sequence):
            raise ValueError("chain signature: kwargs.tasks must be a list")
        return cls(*tasks, app=app, options=mapping.get("options"))

    def freeze(self) -> AsyncResult | GroupResult:
        steps = self.tasks
        if "task_id" in self.options:
            steps[-1].options["task_id"] = self.options["task_id"]
        previous: AsyncResult | GroupResult | None = None
        for step in steps:
            result = step.freeze()
            if previous is not None:
                root_of(result).parent = previous
            previous = result
        assert previous is not None
        self.options["task_id"] = previous.id
        return previous

    def plan(
        self,
        batch: Batch,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        own, follows = _split({**self.options, **(options or {})})
        outer = as_mappings(follows.pop("chain", None)) or []
        steps = self.tasks
        _route(steps[-1], follows)
        rest = outer + [step.to_dict() for step in reversed(steps[1:])]
        steps[0].plan(batch, args, kwargs, {**own, "chain": rest} if rest else own)


class group(Signature):
    """Members run in parallel; the result is the list of their results, in order:
    ``group(add.s(i, i) for i in range(10))``. Applied with arguments, every member gets them."""

    subtask_type = "group"

    def __init__(
        self, *tasks: Any, app: Any = None, options: Mapping[str, Any] | None = None, **more: Any
    ) -> None:
        members = [as_signature(task, app) for task in _members(tasks)]
        super().__init__("celery.group", (), {"tasks": members}, {**(options or {}), **more}, app=app)

    def __repr__(self) -> str:
        return f"group({self.tasks!r})"

    @property
    def tasks(self) -> list[Signature]:
        return cast("list[Signature]", self.kwargs["tasks"])

    def _kwargs_to_dict(self) -> dict[str, Any]:
        return {"tasks": [member.to_dict() for member in self.tasks]}

    def _copy(self) -> Signature:
        if type(self) is not group:
            return super()._copy()
        return group(
            [member._copy() for member in self.tasks], app=self.app, options=options_to_dict(self.options)
        )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], app: Any = None) -> group:
        (tasks,) = kwargs_of(mapping, "tasks")
        if not isinstance(tasks, Sequence):
            raise ValueError("group signature: kwargs.tasks must be a list")
        return cls(tasks, app=app, options=mapping.get("options"))

    def freeze(self) -> GroupResult:
        group_id = self.options.setdefault("task_id", str(uuid.uuid4()))
        return GroupResult(group_id, [member.freeze() for member in self.tasks], app=self._app())

    def plan(
        self,
        batch: Batch,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        own, follows = _split({**self.options, **(options or {})})
        group_id = follows.pop("task_id", None) or str(uuid.uuid4())
        self.options = {**own, "task_id": group_id}
        rest = as_mappings(follows.pop("chain", None))
        if rest:  # steps follow: this group is the header of a chord with the next one as body
            follows = {**follows, "chain": rest[:-1]} if rest[:-1] else follows
            chord(self, as_signature(rest[-1], self.app), app=self.app).plan(batch, args, kwargs, follows)
        elif follows.get("chord") is not None:  # a chord's member: one result, the list
            body = join(app=self.app, options={"task_id": group_id})
            chord(self, body, app=self.app).plan(batch, args, kwargs, follows)
        else:
            links = {key: follows[key] for key in ("link", "link_error") if follows.get(key)}
            for index, member in enumerate(self.tasks):
                _route(member, links)
                member.plan(batch, args, kwargs, {**own, "group_id": group_id, "group_index": index})


class chord(Signature):
    """A group (the header) whose body runs once every header task has succeeded, with the list
    of their results: ``chord(header)(body)`` or ``chord(header, body).apply_async()``. If a
    header task fails, the body does not run: its result is that failure, and its errbacks run.
    """

    subtask_type = "chord"

    def __init__(
        self,
        header: Any,
        body: Any = None,
        app: Any = None,
        options: Mapping[str, Any] | None = None,
        **more: Any,
    ) -> None:
        if isinstance(header, Mapping):
            header = as_signature(header, app)
        if not isinstance(header, group):
            header = group(header, app=app)
        body = None if body is None else as_signature(body, app)
        super().__init__(
            "celery.chord",
            (),
            {"header": header, "body": body, "kwargs": {}},
            {**(options or {}), **more},
            app=app,
        )

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    @property
    def header(self) -> group:
        return cast(group, self.kwargs["header"])

    @property
    def body(self) -> Signature | None:
        return cast("Signature | None", self.kwargs["body"])

    def _kwargs_to_dict(self) -> dict[str, Any]:
        body = None if self.body is None else self.body.to_dict()
        return {"header": self.header.to_dict(), "body": body, "kwargs": {}}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], app: Any = None) -> chord:
        header, body = kwargs_of(mapping, "header", "body")
        if not isinstance(header, (Mapping, Sequence)):
            raise ValueError("chord signature: kwargs.header must be a group or a list")
        return cls(header, body, app=app, options=mapping.get("options"))

    def __call__(self, body: Any = None, **options: Any) -> AsyncResult | GroupResult:
        """``chord(header)(body)``: send the chord with this body (Celery's spelling)."""
        signature = self if body is None else chord(self.header, body, app=self.app, options=self.options)
        return signature.apply_async(**options)

    def _body(self) -> Signature:
        if self.body is None:
            raise ValueError("this chord has no body: chord(header)(body) or chord(header, body)")
        return self.body

    def freeze(self) -> AsyncResult | GroupResult:
        body = self._body()
        header = self.header.freeze()
        if "task_id" in self.options:
            body.options["task_id"] = self.options["task_id"]
        result = body.freeze()
        root_of(result).parent = header
        self.options["task_id"] = result.id
        return result

    def plan(
        self,
        batch: Batch,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        own, follows = _split({**self.options, **(options or {})})
        body = self._body()
        _route(body, follows)
        body.freeze()  # a failed header stores its failure under the body's id
        members = self.header.tasks
        if not members:
            body.plan(batch, ([],))
            return
        counting = check_backend(batch.app)
        group_id = self.header.options.setdefault("task_id", str(uuid.uuid4()))
        # A frozen signature always has an id (a group's is set by its freeze).
        ids = [cast(str, member.freeze().id) for member in members]
        travelling = {**body.to_dict(), "chord_size": len(members)}
        member_options = {**_split(self.header.options)[0], **own, "chord": travelling, "group_id": group_id}
        batch.save_group(group_id, ids)
        for index, (member, member_id) in enumerate(zip(members, ids, strict=True)):
            member.plan(batch, args, kwargs, {**member_options, "group_index": index, "task_id": member_id})
        if not counting:
            batch.send(unlock_call(batch.app, group_id, travelling))


class join(Signature):
    """The body kq gives a group that must yield one result: it runs no task, it stores the
    header's list under the group's id and goes on with what follows the group."""

    subtask_type = "join"

    def __init__(self, app: Any = None, options: Mapping[str, Any] | None = None) -> None:
        super().__init__("kq.join", (), {}, options, app=app)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], app: Any = None) -> join:
        return cls(app=app, options=mapping.get("options"))

    def plan(
        self,
        batch: Batch,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        step = Step.of_options({**self.options, **(options or {})})
        complete(batch, step, args[0] if args else [], name=self.task)
