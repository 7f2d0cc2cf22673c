"""kq.signals: receivers connected to lifecycle hooks, seen through eager runs (no broker).

Publish and worker signals with a real broker and worker are in tests/e2e/test_signals.py.
"""

import logging

import pytest

import kq
from kq import App, signals
from kq.plugins import get_plugins, reload_plugins


@pytest.fixture(autouse=True)
def no_receivers_left():
    yield
    for signal in signals.SIGNALS:
        for receiver in signal.receivers:
            signal.disconnect(receiver)


@pytest.fixture
def app():
    return App("signals", broker="memory://", backend=None)


def test_importable_from_kq():
    assert kq.signals.task_failure is signals.task_failure
    assert {s.name for s in signals.SIGNALS} == {
        "before_task_publish",
        "after_task_publish",
        "task_prerun",
        "task_postrun",
        "task_success",
        "task_failure",
        "task_retry",
        "task_revoked",
        "task_rejected",
        "worker_ready",
        "worker_shutdown",
    }


def test_eager_runs_fire_prerun_success_failure_postrun(app):
    seen = []

    @signals.task_prerun.connect
    def prerun(task, request, **kwargs):
        seen.append(("prerun", task.name, request.id))

    @signals.task_success.connect
    def success(task, request, retval, **kwargs):
        seen.append(("success", request.id, retval))

    @signals.task_failure.connect
    def failure(task, request, exc, traceback, **kwargs):
        seen.append(("failure", request.id, repr(exc), "ValueError" in traceback))

    @signals.task_postrun.connect
    def postrun(task, request, state, retval, **kwargs):
        seen.append(("postrun", request.id, state, retval))

    assert prerun.__name__ == "prerun"  # connect returns the receiver: usable as a decorator

    @app.task(name="sig.add")
    def add(x, y):
        return x + y

    @app.task(name="sig.fail")
    def fail():
        raise ValueError("no")

    assert add.apply((2, 3), task_id="a1").get() == 5
    assert fail.apply(task_id="f1").failed()
    assert seen == [
        ("prerun", "sig.add", "a1"),
        ("success", "a1", 5),
        ("postrun", "a1", "SUCCESS", 5),
        ("prerun", "sig.fail", "f1"),
        ("failure", "f1", "ValueError('no')", True),
        ("postrun", "f1", "FAILURE", None),
    ]


def test_a_raising_receiver_is_logged_and_breaks_nothing(app, caplog):
    seen = []

    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    signals.task_success.connect(broken)
    signals.task_success.connect(lambda retval, **kwargs: seen.append(retval))

    @app.task(name="sig.ok")
    def ok():
        return "fine"

    with caplog.at_level(logging.ERROR, logger="kq.signals"):
        result = ok.apply()
    assert result.successful() and result.get() == "fine"
    assert seen == ["fine"]  # the receiver after the broken one still ran
    assert "receiver bug" in caplog.text and "task_success" in caplog.text


def test_disconnect_and_connecting_twice(app):
    seen = []

    def receiver(request, **kwargs):
        seen.append(request.id)

    signals.task_prerun.connect(receiver)
    signals.task_prerun.connect(receiver)  # still one connection

    @app.task(name="sig.noop")
    def noop():
        pass

    noop.apply(task_id="1")
    assert signals.task_prerun.disconnect(receiver) is True
    assert signals.task_prerun.disconnect(receiver) is False
    noop.apply(task_id="2")
    assert seen == ["1"]
    with pytest.raises(TypeError, match="callable"):
        signals.task_prerun.connect("not callable")


def test_a_hook_without_receivers_stays_unimplemented():
    """The point of relaying only connected signals: the kernel's hot paths still find no
    implementation and skip the call."""
    plugins = get_plugins()
    assert plugins.notifier("kq_task_failure") is None
    assert "signals" not in plugins.infos

    def receiver(**kwargs):
        pass

    signals.task_failure.connect(receiver)
    assert plugins.notifier("kq_task_failure") is not None
    assert plugins.notifier("kq_task_success") is None  # only the connected signal's hook
    assert plugins.infos["signals"].hooks == ("kq_task_failure",)
    assert plugins.infos["signals"].distribution == "kq"
    signals.task_failure.disconnect(receiver)
    assert plugins.notifier("kq_task_failure") is None
    assert "signals" not in plugins.infos


def test_receivers_survive_a_plugin_reload(app):
    seen = []
    signals.task_prerun.connect(lambda request, **kwargs: seen.append(request.id))
    try:
        reload_plugins()
        app._plugins = None  # the app picks the reloaded plugins up

        @app.task(name="sig.reloaded")
        def reloaded():
            pass

        reloaded.apply(task_id="r1")
        assert seen == ["r1"]
        assert get_plugins().infos["signals"].hooks == ("kq_task_prerun",)
    finally:
        reload_plugins()


def test_every_relay_takes_exactly_its_hooks_arguments():
    """pluggy passes a hook implementation only the arguments it names: a relay that drifted
    from its hookspec would silently drop (or fail on) an argument."""
    import inspect

    from kq import hookspecs

    for signal in signals.SIGNALS:
        spec = inspect.signature(getattr(hookspecs, signal.hook)).parameters
        relay = inspect.signature(signals._RELAYS[signal.hook]).parameters
        assert list(relay) == list(spec), signal.name


def test_eager_retries_fire_task_retry(app):
    seen = []
    signals.task_retry.connect(lambda request, reason, **kw: seen.append((request.retries, str(reason))))

    @app.task(name="sig.flaky", bind=True, max_retries=2, default_retry_delay=0)
    def flaky(self):
        if self.request.retries < 2:
            raise self.retry(exc=ValueError(f"attempt {self.request.retries}"))
        return "done"

    assert flaky.apply().get() == "done"
    assert seen == [(0, "attempt 0"), (1, "attempt 1")]
