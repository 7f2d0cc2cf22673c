"""A task's ``priority`` is the default for calls that give none: after the call's own option
and after ``task_routes``, before nothing (no priority at all)."""

import pytest

from kq import App


def make_app(**settings) -> App:
    return App("prio", broker="memory://", backend=None, **settings)


def test_task_priority_is_the_default_for_calls_without_one() -> None:
    app = make_app()

    @app.task(name="prio.urgent", priority=8)
    def urgent() -> None: ...

    @app.task(name="prio.plain")
    def plain() -> None: ...

    router = app.router
    assert router.destination("prio.urgent", (), {}, None, {}, urgent)[1] == 8
    assert router.destination("prio.urgent", (), {}, None, {"priority": 2}, urgent)[1] == 2
    assert router.destination("prio.plain", (), {}, None, {}, plain)[1] is None


def test_a_route_priority_comes_before_the_task_default() -> None:
    app = make_app(task_routes={"prio.*": {"priority": 3}})

    @app.task(name="prio.urgent", priority=8)
    def urgent() -> None: ...

    assert app.router.destination("prio.urgent", (), {}, None, {}, urgent)[1] == 3


@pytest.mark.parametrize("bad", [-1, 10, 5.0, True, "9"])
def test_a_task_priority_outside_0_to_9_fails_at_definition(bad) -> None:
    app = make_app()
    with pytest.raises(ValueError, match="priority must be a whole number from 0 to 9"):
        app.task(name="prio.bad", priority=bad)(lambda: None)
