"""kq-race: run signatures side by side and go on with the first result (PLUGIN_GUIDE.md's
worked example of a canvas primitive, used by tests/e2e/test_canvas.py).

``race(a.s(), b.s())`` sends every member at once. The first member to succeed wins: its value
becomes the race's result and goes to whatever follows the race (the next step of a chain, the
chord the race is a member of, its links). The race fails only if every member fails.
"""

from __future__ import annotations

import uuid

from kq import Signature, hookimpl
from kq.canvas.continuation import complete, fail
from kq.canvas.signature import options_to_dict
from kq.canvas.wire import Cause, Step
from kq.specs import CanvasPrimitiveSpec


class race(Signature):
    """The first member to succeed decides the result."""

    subtask_type = "race"

    def __init__(self, *tasks, app=None, options=None):
        members = [t if isinstance(t, Signature) else Signature.from_dict(t, app) for t in tasks]
        super().__init__("kq_race.race", (), {"tasks": members}, options, app=app)

    def _kwargs_to_dict(self):
        return {"tasks": [member.to_dict() for member in self.kwargs["tasks"]]}

    @classmethod
    def from_dict(cls, mapping, app=None):
        return cls(*mapping["kwargs"]["tasks"], app=app, options=mapping.get("options"))

    def plan(self, batch, args=(), kwargs=None, options=None):
        # What follows the race (its result id, the next chain step, an outer chord, links)
        # travels with each member's callback and waits there for the winner.
        follows = options_to_dict({**self.options, **(options or {})})
        follows.setdefault("task_id", str(uuid.uuid4()))
        size = len(self.kwargs["tasks"])
        for member in self.kwargs["tasks"]:
            member = member.clone()
            member.link(finish(follows, size, won=True, app=self.app))
            member.link_error(finish(follows, size, won=False, app=self.app))
            member.plan(batch, args, kwargs)


class finish(Signature):
    """A member's end: runs no task; the first success (or the last failure) settles the race."""

    subtask_type = "race.finish"

    def __init__(self, follows, size, won, app=None, options=None):
        super().__init__(
            "kq_race.finish", (), {"follows": follows, "size": size, "won": won}, options, app=app
        )

    @classmethod
    def from_dict(cls, mapping, app=None):
        kwargs = mapping["kwargs"]
        return cls(kwargs["follows"], kwargs["size"], kwargs["won"], app=app, options=mapping.get("options"))

    def plan(self, batch, args=(), kwargs=None, options=None):
        app, follows = batch.app, self.kwargs["follows"]
        step = Step.of_options(follows)
        if self.kwargs["won"]:  # args[0] is the member's value
            if app.backend.incr(f"race.{step.task_id}.won", 1, app.conf.result_expires) == 1:
                complete(batch, step, args[0], name="kq_race.race")
        elif app.backend.incr(f"race.{step.task_id}.lost", 1, app.conf.result_expires) == self.kwargs["size"]:
            # args[0] is the failed member's id: every member failed, the race fails with it.
            fail(batch, step, Cause.of_meta(app.read_result(args[0])), name="kq_race.race")


@hookimpl
def kq_canvas_primitives():
    return [
        CanvasPrimitiveSpec("race", race.from_dict, "the first member to succeed wins"),
        CanvasPrimitiveSpec("race.finish", finish.from_dict, "a race member's end"),
    ]
