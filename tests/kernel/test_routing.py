"""``task_routes``: matching by name, glob, regex and function, precedence, and validation.

Sending through a broker with routes is in tests/e2e/test_routing.py; here the router alone.
"""

import re
import sys
import types

import pytest

from kq import App
from kq.exceptions import ConfigurationError
from kq.routing import Route, Router


def dest(router, name, queue=None, task=None, args=(), kwargs=None, **options):
    return router.destination(name, args, kwargs or {}, queue, options, task)


def test_names_globs_and_regexes():
    router = Router(
        {
            "billing.refund": "refunds",
            "billing.*": "billing",
            "report?.make": {"queue": "reports", "priority": 2},
            re.compile(r"(video|image)\."): "media",
        }
    )
    assert dest(router, "billing.refund") == ("refunds", None)  # an exact name beats a glob
    assert dest(router, "billing.charge") == ("billing", None)
    assert dest(router, "billing.nested.deep") == ("billing", None)  # * crosses dots
    assert dest(router, "old.billing.charge") == ("celery", None)  # globs match the whole name
    assert dest(router, "reports.make") == ("reports", 2)
    assert dest(router, "reportxx.make") == ("celery", None)  # ? is exactly one character
    assert dest(router, "video.encode") == ("media", None)  # a regex matches from the start
    assert dest(router, "my.video.encode") == ("celery", None)


def test_the_first_matching_glob_wins_in_mapping_order():
    router = Router({"a.*": "first", "a.b*": "second"})
    assert dest(router, "a.bc") == ("first", None)
    router = Router({"a.b*": "second", "a.*": "first"})
    assert dest(router, "a.bc") == ("second", None)


def test_a_list_is_tried_in_order_and_functions_see_the_call():
    calls = []

    def by_size(name, args, kwargs, options, task=None):
        calls.append((name, args, dict(kwargs), dict(options), task))
        if name.startswith("img.") and kwargs.get("size", 0) > 100:
            return {"queue": "big", "priority": 9}
        return None  # no opinion: the next route decides

    router = Router([{"img.thumb": "thumbs"}, by_size, {"img.*": "images"}], default_queue="dflt")
    assert dest(router, "img.thumb", kwargs={"size": 500}) == ("thumbs", None)
    assert calls == []  # an earlier mapping matched: the function is not asked
    assert dest(router, "img.resize", kwargs={"size": 500}, countdown=3) == ("big", 9)
    assert dest(router, "img.resize", kwargs={"size": 5}) == ("images", None)
    assert dest(router, "other") == ("dflt", None)
    assert calls[0] == ("img.resize", (), {"size": 500}, {"countdown": 3}, None)
    assert len(calls) == 3  # called for every call that reached it, never remembered


def test_precedence_call_then_routes_then_task_then_default():
    app = App(
        "routing",
        broker="memory://",
        backend=None,
        task_default_queue="dflt",
        task_routes={"t.routed": {"queue": "from-route", "priority": 4}},
    )

    @app.task(name="t.routed", queue="from-task")
    def routed():
        pass

    @app.task(name="t.own", queue="from-task")
    def own():
        pass

    router = app.router
    assert dest(router, "t.routed", task=routed) == ("from-route", 4)
    assert dest(router, "t.routed", task=routed, queue="from-call") == ("from-call", 4)
    assert dest(router, "t.routed", task=routed, priority=1) == ("from-route", 1)
    assert dest(router, "t.own", task=own) == ("from-task", None)
    assert dest(router, "t.unknown") == ("dflt", None)


def test_a_route_may_set_only_the_priority():
    app = App("routing", broker="memory://", backend=None, task_routes={"t.*": {"priority": 7}})

    @app.task(name="t.x", queue="own")
    def x():
        pass

    assert dest(app.router, "t.y") == ("celery", 7)
    assert dest(app.router, "t.x", task=x) == ("own", 7)


def test_glob_matching_is_done_once_per_name():
    router = Router({"a.*": "q"})
    (mapping,) = router._steps
    assert mapping.get("a.x") == Route(queue="q")
    mapping._patterns.clear()  # the answer for a.x is remembered; new names find nothing now
    assert dest(router, "a.x") == ("q", None)
    assert dest(router, "a.y") == ("celery", None)


def test_no_routes_means_no_lookup():
    assert not Router({}) and not Router(None) and not Router([{}])
    assert App("t", broker="memory://").conf.task_routes == {}


def test_import_paths(monkeypatch):
    module = types.ModuleType("kq_test_routes")
    module.routes = {"x.*": "xs"}
    module.route = lambda name, args, kwargs, options, task=None: "fn" if name == "f" else None
    monkeypatch.setitem(sys.modules, "kq_test_routes", module)
    router = Router(["kq_test_routes:routes", "kq_test_routes.route"])
    assert dest(router, "x.1") == ("xs", None)
    assert dest(router, "f") == ("fn", None)


def test_environment_takes_json_or_an_import_path(monkeypatch):
    module = types.ModuleType("kq_test_env_routes")
    module.route = lambda name, *args, **kw: "env-fn"
    monkeypatch.setitem(sys.modules, "kq_test_env_routes", module)
    monkeypatch.setenv("KQ_TASK_ROUTES", '{"a.*": "env-a"}')
    assert dest(App("t", broker="memory://").router, "a.b") == ("env-a", None)
    monkeypatch.setenv("KQ_TASK_ROUTES", '[{"a.*": {"queue": "q", "priority": 3}}]')
    assert dest(App("t", broker="memory://").router, "a.b") == ("q", 3)
    monkeypatch.setenv("KQ_TASK_ROUTES", "kq_test_env_routes:route")
    assert dest(App("t", broker="memory://").router, "a.b") == ("env-fn", None)


def test_a_route_function_in_a_config_module_is_read():
    module = types.ModuleType("cfg")

    def task_routes(name, args, kwargs, options, task=None):
        return "from-module"

    module.task_routes = task_routes
    module.helper = lambda: None  # other callables are still skipped
    app = App("t", broker="memory://")
    app.config_from_object(module)
    assert dest(app.router, "any") == ("from-module", None)


@pytest.mark.parametrize(
    ("routes", "words"),
    [
        (42, ["task_routes", "mapping", "route function"]),
        ({"a": 5}, ["task_routes", "'a'", "queue name"]),
        ({"a": ""}, ["task_routes", "queue name"]),
        ({"a": {"exchange": "x"}}, ["task_routes", "exchange", "accepted", "priority", "queue"]),
        ({"a": {"queue": "q", "priority": 10}}, ["task_routes", "priority", "0 to 9", "10"]),
        ({"a": {"queue": 3}}, ["task_routes", "queue must be a non-empty string"]),
        ({3: "q"}, ["task_routes", "keys must be"]),
        ("no_such_module_kq:route", ["task_routes", "cannot import", "no_such_module_kq"]),
        ("justaname", ["task_routes", "import path"]),
    ],
)
def test_invalid_routes_name_the_setting(routes, words):
    with pytest.raises(ConfigurationError) as info:
        App("t", broker="memory://", task_routes=routes).conf  # noqa: B018
    for word in words:
        assert word in str(info.value)


def test_a_route_function_returning_nonsense_fails_the_call_naming_the_setting():
    router = Router(lambda name, args, kwargs, options, task=None: 12)
    with pytest.raises(ConfigurationError, match="task_routes: route function .* got 12"):
        dest(router, "t")
