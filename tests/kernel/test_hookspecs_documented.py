"""The hook reference cannot drift from the code (a meta-test, as datasette has).

For every hookspec in :mod:`kq.hookspecs`: PLUGIN_GUIDE.md shows its exact signature, and some
test under tests/ or plugins/ names it. Every spec class kq exports for plugin authors
(:mod:`kq.specs`) is described in the guide too. A new hook or argument fails here until the
guide documents it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kq.hookspecs
import kq.specs

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "PLUGIN_GUIDE.md"


def hookspecs() -> dict[str, Callable[..., Any]]:
    """Every function of kq.hookspecs marked with the ``kq`` hookspec marker."""
    marker = f"{kq.hookspecs.PROJECT}_spec"
    return {
        name: obj
        for name, obj in vars(kq.hookspecs).items()
        if inspect.isfunction(obj) and hasattr(obj, marker)
    }


def signature(function: Callable[..., Any]) -> str:
    """``def name(arg: Type, ...) -> Return:`` as the source spells the annotations.

    The module uses postponed annotations, so they are the source's own strings (``click.Group``,
    not ``<class 'click.core.Group'>``); ``inspect.signature`` keeps them unevaluated.
    """
    sig = inspect.signature(function)

    def text(annotation: Any) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    params = ", ".join(
        name if p.annotation is inspect.Parameter.empty else f"{name}: {text(p.annotation)}"
        for name, p in sig.parameters.items()
    )
    returns = "" if sig.return_annotation is inspect.Signature.empty else f" -> {text(sig.return_annotation)}"
    return f"def {function.__name__}({params}){returns}:"


def normalized(text: str) -> str:
    """Whitespace collapsed and Markdown table escapes undone, so a wrapped or tabled signature
    still matches."""
    return re.sub(r"\s+", " ", text.replace("\\|", "|")).replace("( ", "(").replace(" )", ")")


SPECS = hookspecs()


def test_the_hookspecs_are_found() -> None:
    # Guards the introspection itself: if the marker attribute changed, every test below would
    # pass vacuously.
    assert {
        "kq_transports",
        "kq_serializers",
        "kq_pools",
        "kq_result_backends",
        "kq_cli_commands",
        "kq_task_prerun",
        "kq_message_rejected",
    } <= set(SPECS)
    assert signature(SPECS["kq_cli_commands"]) == "def kq_cli_commands(cli: click.Group) -> None:"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_guide_shows_the_exact_signature(name: str) -> None:
    expected = signature(SPECS[name])
    assert normalized(expected) in normalized(GUIDE.read_text(encoding="utf-8")), (
        f"PLUGIN_GUIDE.md, section 3 (Hook reference), must show {expected!r} as kq/hookspecs.py declares it"
    )


def _test_sources() -> str:
    files = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "plugins").glob("*/tests/**/*.py")]
    return "\n".join(
        path.read_text(encoding="utf-8") for path in files if path.resolve() != Path(__file__).resolve()
    )


@pytest.fixture(scope="module")
def test_sources() -> str:
    return _test_sources()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_some_test_exercises_the_hook(name: str, test_sources: str) -> None:
    assert re.search(rf"\b{name}\b", test_sources), (
        f"no test under tests/ or plugins/*/tests mentions {name}: a hook nobody tests can break unnoticed"
    )


@pytest.mark.parametrize("name", sorted(kq.specs.__all__))
def test_every_exported_spec_class_is_in_the_guide(name: str) -> None:
    assert re.search(rf"\b{name}\b", GUIDE.read_text(encoding="utf-8")), (
        f"kq.specs exports {name} for plugin authors, but PLUGIN_GUIDE.md never mentions it"
    )
