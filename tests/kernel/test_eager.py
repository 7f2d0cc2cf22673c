"""task.apply() runs a task in process, through the same code path a worker uses."""

import pytest

from kq import App, hookimpl
from kq.plugins import get_plugins


@pytest.fixture
def app():
    return App("eager", broker="memory://", backend="memory://")


def test_apply_returns_value_and_request(app):
    @app.task(bind=True)
    def who(self, x):
        return [self.request.id, self.request.is_eager, x]

    result = who.apply((5,), task_id="fixed")
    assert result.successful() and result.get() == ["fixed", True, 5]


def test_apply_keeps_the_original_exception(app):
    class Custom(Exception):
        pass

    @app.task
    def fail():
        raise Custom("no")

    result = fail.apply()
    assert result.state == "FAILURE" and "Custom" in result.traceback
    with pytest.raises(Custom):
        result.get()
    assert isinstance(result.get(propagate=False), Custom)


def test_arguments_are_checked_before_sending(app):
    @app.task
    def add(x, y):
        return x + y

    with pytest.raises(TypeError, match="missing a required argument"):
        add.apply((1,))
    with pytest.raises(TypeError, match="unknown option"):
        add.apply_async((1, 2), countdwn=3)


def test_task_hooks_fire_around_eager_runs(app):
    seen = []

    class Recorder:
        @hookimpl
        def kq_task_prerun(self, task, request):
            seen.append(("pre", task.name, request.id))

        @hookimpl
        def kq_task_postrun(self, task, request, state, retval):
            seen.append(("post", state, retval))

    plugins = get_plugins()
    recorder = Recorder()
    plugins.register(recorder, "recorder")
    try:

        @app.task(name="hooked")
        def hooked():
            return 42

        hooked.apply(task_id="h1")
    finally:
        plugins.pm.unregister(recorder)
        plugins.infos.pop("recorder")
        plugins._has_impls.clear()
    assert seen == [("pre", "hooked", "h1"), ("post", "SUCCESS", 42)]


def test_task_names(app):
    @app.task
    def plain():
        pass

    @app.task(name="custom.name")
    def named():
        pass

    assert plain.name == f"{__name__}.test_task_names.<locals>.plain"
    assert named.name == "custom.name" and app.tasks["custom.name"] is named
