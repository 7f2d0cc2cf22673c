"""A call's arguments are checked before it is sent. Positional-only calls take a quick count
(``Task._check_arguments``); it must accept and refuse exactly what ``Signature.bind`` does."""

from __future__ import annotations

import inspect

import pytest

from kq import App

#: Parameter lists covering every kind, with and without defaults.
SHAPES = [
    "",
    "a",
    "a, b",
    "a, b=1",
    "a=1, b=2",
    "*args",
    "a, *args",
    "a, b=1, *args",
    "a, /, b",
    "a, /, b=1, *, c",
    "a, *, c",
    "a, *, c=1",
    "*, c",
    "a, **kwargs",
    "a, b=1, *args, c=2, **kwargs",
]


def _function(params: str):  # noqa: ANN202 - a function built from text
    namespace: dict = {}
    exec(f"def f({params}):\n    return None\n", namespace)  # noqa: S102 - the test's own text
    return namespace["f"]


@pytest.mark.parametrize("bind", [False, True])
@pytest.mark.parametrize("params", SHAPES)
def test_the_count_check_agrees_with_bind(params: str, bind: bool) -> None:
    app = App("argcheck", broker="memory://", backend="memory://")
    fun = _function(f"self, {params}" if bind and params else "self" if bind else params)
    task = app.task(fun, name=f"argcheck.{bind}.{params}", bind=bind)
    signature = inspect.signature(fun)
    for count in range(6):
        args = tuple(range(count))
        try:
            signature.bind(*((None,) if bind else ()), *args)
        except TypeError:
            expected = False
        else:
            expected = True
        try:
            task._check_arguments(args, {})
        except TypeError:
            accepted = False
        else:
            accepted = True
        assert accepted == expected, (params, bind, count)
