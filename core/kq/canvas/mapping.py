"""Many calls of one task in few messages: ``add.map(items)``, ``add.starmap(pairs)`` and
``add.chunks(pairs, n)``.

A map or starmap is one message (Celery's ``celery.map`` / ``celery.starmap`` task, which every
kq worker registers, see :mod:`kq.canvas.tasks`) whose worker calls the task once per item, in
order, in one process: cheap for many small calls. ``chunks`` splits the items into starmaps of
``n`` and runs them as a group, so the chunks spread over workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..result import AsyncResult, GroupResult
from .continuation import Batch
from .primitives import group, kwargs_of
from .signature import Signature, as_signature


class _Map(Signature):
    """``task`` called once per item of ``it``, in one message."""

    runner: str

    def __init__(
        self,
        task: Any,
        it: Iterable[Any],
        app: Any = None,
        options: Mapping[str, Any] | None = None,
        **more: Any,
    ) -> None:
        super().__init__(
            self.runner,
            (),
            {"task": as_signature(task, app), "it": list(it)},
            {**(options or {}), **more},
            immutable=True,
            app=app,
        )

    def __repr__(self) -> str:
        return f"{self.subtask_type}({self.kwargs['task']!r}, <{len(self.kwargs['it'])} items>)"

    def _kwargs_to_dict(self) -> dict[str, Any]:
        return {"task": self.kwargs["task"].to_dict(), "it": list(self.kwargs["it"])}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], app: Any = None) -> _Map:
        task, it = kwargs_of(mapping, "task", "it")
        if not isinstance(it, Sequence):
            raise ValueError(f"{cls.subtask_type} signature: kwargs.it must be a list")
        return cls(task, it, app=app, options=mapping.get("options"))


class xmap(_Map):
    """``task(item)`` for each item (``add.map(items)``)."""

    subtask_type = "xmap"
    runner = "celery.map"


class xstarmap(_Map):
    """``task(*item)`` for each item (``add.starmap(pairs)``)."""

    subtask_type = "xstarmap"
    runner = "celery.starmap"


class chunks(Signature):
    """``task(*item)`` for each item, ``n`` items per message, the messages run as a group: the
    result is a list of lists. ``chunks(add.s(), pairs, 100)`` or ``add.chunks(pairs, 100)``."""

    subtask_type = "chunks"

    def __init__(
        self,
        task: Any,
        it: Iterable[Any],
        n: int,
        app: Any = None,
        options: Mapping[str, Any] | None = None,
        **more: Any,
    ) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"chunks: n must be a whole number of at least 1, got {n!r}")
        super().__init__(
            "celery.chunks",
            (),
            {"task": as_signature(task, app), "it": list(it), "n": n},
            {**(options or {}), **more},
            immutable=True,
            app=app,
        )
        self._group: group | None = None

    def __repr__(self) -> str:
        return f"chunks({self.kwargs['task']!r}, <{len(self.kwargs['it'])} items>, {self.kwargs['n']})"

    def _kwargs_to_dict(self) -> dict[str, Any]:
        return {"task": self.kwargs["task"].to_dict(), "it": list(self.kwargs["it"]), "n": self.kwargs["n"]}

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], app: Any = None) -> chunks:
        task, it, n = kwargs_of(mapping, "task", "it", "n")
        if not isinstance(it, Sequence):
            raise ValueError("chunks signature: kwargs.it must be a list")
        return cls(task, it, n, app=app, options=mapping.get("options"))

    def group(self) -> group:
        """The group of starmaps this runs as (built once, so its ids stay fixed)."""
        if self._group is None:
            task, items, n = (self.kwargs[key] for key in ("task", "it", "n"))
            parts = iter(items)
            starmaps = [
                xstarmap(task, part, app=self.app)
                for part in iter(lambda: list(itertools.islice(parts, n)), [])
            ]
            self._group = group(
                starmaps, app=self.app, options={k: v for k, v in self.options.items() if k != "task_id"}
            )
        return self._group

    def freeze(self) -> AsyncResult | GroupResult:
        if "task_id" in self.options:
            self.group().options["task_id"] = self.options["task_id"]
        result = self.group().freeze()
        self.options["task_id"] = result.id
        return result

    def plan(
        self,
        batch: Batch,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.group().plan(batch, (), None, {**self.options, **(options or {})})
