"""Signatures and the built-in primitives as data: Celery's signature mapping, the message embed,
how composites are built and nested, and the primitive registry. (Running them on workers is in
tests/e2e/test_canvas*.py.)"""

import json
import types

import pytest

from kq import App, GroupResult, Signature, chain, chord, chunks, group, hookimpl, signature
from kq.builtins import kq_canvas_primitives
from kq.canvas.mapping import xmap, xstarmap
from kq.canvas.primitives import join
from kq.canvas.wire import Call, Cause, Step, merge
from kq.exceptions import PluginError
from kq.plugins import Plugins, get_plugins
from kq.protocol import ResultMeta, decode_task, encode_task
from kq.specs import CanvasPrimitiveSpec
from kq.task import new_message

KEYS = {"task", "args", "kwargs", "options", "subtask_type", "immutable", "chord_size"}


@pytest.fixture
def app():
    app = App("canvas", broker="memory://", backend=None)

    @app.task(name="k.add")
    def add(x, y):
        return x + y

    @app.task(name="k.tsum")
    def tsum(values):
        return sum(values)

    return app


@pytest.fixture
def add(app):
    return app.tasks["k.add"]


@pytest.fixture
def tsum(app):
    return app.tasks["k.tsum"]


def through_json(value):
    return json.loads(json.dumps(value))


def test_a_signature_is_celerys_signature_mapping(add):
    sig = add.s(2, 2).set(queue="math", countdown=5)
    assert sig.to_dict() == {
        "task": "k.add",
        "args": [2, 2],
        "kwargs": {},
        "options": {"queue": "math", "countdown": 5},
        "subtask_type": None,
        "immutable": False,
        "chord_size": None,
    }
    assert add.si(1, y=2).to_dict()["immutable"] is True
    assert Signature.from_dict(through_json(sig.to_dict())) == sig
    assert signature("k.add", (1, 2), queue="q").to_dict()["options"] == {"queue": "q"}


def test_every_builtin_composite_round_trips_through_json(app, add, tsum):
    workflows = [
        add.s(1, 1) | add.s(2) | add.s(3),
        group(add.s(i, i) for i in range(3)),
        chord([add.s(1, 1), add.s(2, 2)], tsum.s()),
        add.chunks([(1, 2), (3, 4), (5, 6)], 2),
        add.map([1, 2]),
        add.starmap([(1, 2)]),
        chord(
            [chain(add.s(1, 1), add.s(1)), group(add.s(1, 1), add.s(2, 2))], chord([add.s(3, 3)], tsum.s())
        ),
    ]
    for workflow in workflows:
        mapping = through_json(workflow.to_dict())
        assert mapping.keys() == KEYS
        rebuilt = Signature.from_dict(mapping, app)
        assert type(rebuilt) is type(workflow) and through_json(rebuilt.to_dict()) == mapping


def test_composites_are_serialized_in_celerys_layout(add, tsum):
    flow = chain(add.s(1, 1), add.s(2)).to_dict()
    assert (flow["task"], flow["subtask_type"]) == ("celery.chain", "chain")
    assert [step["task"] for step in flow["kwargs"]["tasks"]] == ["k.add", "k.add"]
    both = chord([add.s(1, 1)], tsum.s()).to_dict()
    assert (both["task"], both["subtask_type"]) == ("celery.chord", "chord")
    assert both["kwargs"]["header"]["subtask_type"] == "group"
    assert both["kwargs"]["body"]["task"] == "k.tsum" and both["kwargs"]["kwargs"] == {}
    parts = add.chunks([[1, 2]], 10).to_dict()
    assert (parts["task"], parts["kwargs"]) == (
        "celery.chunks",
        {"task": add.s().to_dict(), "it": [[1, 2]], "n": 10},
    )
    assert add.map([1]).to_dict()["task"] == "celery.map"
    assert add.starmap([(1, 2)]).to_dict()["task"] == "celery.starmap"


def test_reads_signatures_written_by_celery(app):
    """As Celery 5 writes them: no chord_size, a chord header as a plain list, options kq does
    not know (dropped when the step is sent), links as mappings."""
    celery_chain = {
        "task": "celery.chain",
        "args": [],
        "kwargs": {
            "tasks": [
                {
                    "task": "k.add",
                    "args": [1, 1],
                    "kwargs": {},
                    "subtask_type": None,
                    "immutable": False,
                    "options": {"task_id": "a", "reply_to": "r", "parent_id": "p"},
                },
                {
                    "task": "k.add",
                    "args": [2],
                    "kwargs": {},
                    "subtask_type": None,
                    "immutable": False,
                    "options": {
                        "link_error": [
                            {
                                "task": "k.tsum",
                                "args": [],
                                "kwargs": {},
                                "options": {},
                                "subtask_type": None,
                                "immutable": False,
                            }
                        ]
                    },
                },
            ]
        },
        "options": {},
        "subtask_type": "chain",
        "immutable": False,
    }
    flow = Signature.from_dict(celery_chain, app)
    assert isinstance(flow, chain) and [s.id for s in flow.tasks] == ["a", None]
    assert merge(flow.tasks[0].to_dict(), lenient=True).options == {"task_id": "a"}
    celery_chord = {
        "task": "celery.chord",
        "args": [],
        "options": {},
        "subtask_type": "chord",
        "immutable": False,
        "kwargs": {"kwargs": {}, "body": celery_chain, "header": [celery_chain["kwargs"]["tasks"][0]]},
    }
    both = Signature.from_dict(celery_chord, app)
    assert isinstance(both.header, group) and isinstance(both.body, chain)


def test_workflow_options_travel_in_the_message_embed(add, tsum):
    body = {**tsum.s().to_dict(), "chord_size": 2}
    message = new_message(
        "k.add",
        (1, 2),
        {},
        link=add.s(10),
        link_error=[tsum.s()],
        chain=[add.s(3).to_dict(), add.s(2)],
        chord=body,
        group_id="g",
        group_index=1,
    )
    serializers = get_plugins().serializers()
    envelope = encode_task(message, serializers, "json")
    _, _, embed = json.loads(envelope.body)
    assert embed == {
        "callbacks": [add.s(10).to_dict()],
        "errbacks": [tsum.s().to_dict()],
        "chain": [add.s(3).to_dict(), add.s(2).to_dict()],
        "chord": body,
    }
    assert (envelope.headers["group"], envelope.headers["group_index"]) == ("g", 1)
    step = Step.of_message(decode_task(envelope, serializers, frozenset({"application/json"})))
    assert step.chain[-1]["args"] == [2] and step.chord["chord_size"] == 2 and step.group_id == "g"
    assert Step.of_message(new_message("k.add", (1, 2), {})) is None  # the common case


def test_calls_merge_partial_arguments_first_unless_immutable(add):
    assert merge(add.s(2, z=1).to_dict(), (1,), {"w": 0}, {"queue": "q"}) == Call(
        "k.add", (1, 2), {"z": 1, "w": 0}, {"queue": "q"}
    )
    assert merge(add.si(2, 3).to_dict(), (1,)).args == (2, 3)
    with pytest.raises(TypeError, match="unknown option"):
        merge(add.s().to_dict(), options={"qeueu": "q"})
    with pytest.raises(TypeError, match="unknown option"):
        add.s().set(qeueu="q")
    with pytest.raises(TypeError, match="unknown option"):
        add.s().apply_async(qeueu="q")
    with pytest.raises(ValueError, match="args must be a list"):
        merge({"task": "k.add", "args": 5})


def test_chains_flatten_and_a_group_followed_by_a_step_becomes_a_chord(add, tsum):
    flat = (add.s(1, 1) | add.s(2)) | (add.s(3) | add.s(4))
    assert isinstance(flat, chain) and len(flat.tasks) == 4
    upgraded = chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(), add.s(5))
    assert [type(step) for step in upgraded.tasks] == [Signature, chord, Signature]
    assert upgraded.tasks[1].body.task == "k.tsum"
    assert isinstance(group(add.s(1, 1)) | tsum.s(), chain)
    assert len(group([add.s(i, i) for i in range(4)]).tasks) == 4
    assert len(chord(add.s(i, i) for i in range(3)).header.tasks) == 3  # Celery's spelling


def test_freeze_fixes_every_result_id_and_links_the_parents(add, tsum):
    flow = chain(add.s(1, 1), chord([add.s(1), add.s(2)], tsum.s()), add.s(3))
    last = flow.freeze()
    assert flow.freeze().id == last.id == flow.id  # freezing again keeps the ids
    body = last.parent
    header = body.parent
    assert isinstance(header, GroupResult) and len(header) == 2
    assert header.parent.id == flow.tasks[0].id
    assert [r.id for r in header] == [s.id for s in flow.tasks[1].header.tasks]
    assert chunks(add.s(), [(1, 1)] * 5, 2).freeze().results.__len__() == 3


def test_the_registry_holds_the_builtins_and_an_unknown_type_names_them(app):
    names = set(app.plugins.canvas_primitives)
    assert {"chain", "group", "chord", "join", "xmap", "xstarmap", "chunks"} <= names
    with pytest.raises(PluginError, match="canvas primitive 'nope'.*chain"):
        Signature.from_dict({"task": "x", "subtask_type": "nope"}, app)
    assert {spec.name for spec in kq_canvas_primitives()} == {
        "chain",
        "group",
        "chord",
        "join",
        "xmap",
        "xstarmap",
        "chunks",
    }
    assert [
        type(Signature.from_dict(s.to_dict(), app))
        for s in (xmap("k.add", []), xstarmap("k.add", []), join())
    ] == [xmap, xstarmap, join]


class twice(Signature):
    """A third-party primitive for the test below: the task, run two times as a group."""

    subtask_type = "twice"

    def __init__(self, task, app=None, options=None):
        super().__init__("twice", (), {"task": task}, options, app=app)

    def _kwargs_to_dict(self):
        return {"task": self.kwargs["task"].to_dict()}

    @classmethod
    def from_dict(cls, mapping, app=None):
        return cls(Signature.from_dict(mapping["kwargs"]["task"], app), app, mapping["options"])

    def plan(self, batch, args=(), kwargs=None, options=None):
        task = self.kwargs["task"]
        group(task.clone(), task.clone(), app=self.app).plan(
            batch, args, kwargs, {**self.options, **(options or {})}
        )


def test_a_plugins_primitive_is_rebuilt_from_messages_and_nests_in_builtins(app, add):
    plugins = Plugins()
    plugins.register(types.SimpleNamespace(kq_canvas_primitives=kq_canvas_primitives), "builtins")

    @hookimpl
    def kq_canvas_primitives_of_plugin():
        return [CanvasPrimitiveSpec("twice", twice.from_dict, "run a task twice")]

    plugin = types.SimpleNamespace(kq_canvas_primitives=kq_canvas_primitives_of_plugin)
    plugins.register(plugin, "kq-twice")
    app._plugins = plugins
    flow = chain(add.s(1, 1), twice(add.s(5), app=app), add.s(0), app=app)
    rebuilt = Signature.from_dict(through_json(flow.to_dict()), app)
    assert isinstance(rebuilt.tasks[1], twice) and rebuilt.to_dict() == flow.to_dict()
    assert plugins.canvas_primitives.get("twice").description == "run a task twice"


def test_a_cause_names_the_task_that_raised_in_every_failure_it_passes_on():
    cause = Cause.of_exception("t1", ValueError("boom"), "Traceback ...\n")
    skipped = cause.failure_of("t2", "k.add")
    assert skipped.state == "FAILURE" and skipped.result["raised_by"] == "t1"
    assert "task t2 did not run: task t1 failed" in skipped.traceback
    again = Cause.of_meta(skipped)  # passed on again: the same task and exception
    assert (again.task_id, again.exception) == (cause.task_id, cause.exception)
    assert again.traceback.startswith(cause.traceback)
    assert Cause.of_meta(ResultMeta(task_id="t3", state="REVOKED", result=None)).task_id == "t3"
