"""kq.specs.lazy: a spec factory that imports what it names on its first call, and only then."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from kq.exceptions import PluginError
from kq.specs import lazy


def test_the_named_module_is_imported_by_the_first_call_not_before() -> None:
    code = (
        "import sys; from kq.specs import lazy; make = lazy('colorsys:rgb_to_hsv'); "
        "print('colorsys' in sys.modules, make(1, 0, 0), 'colorsys' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "(0.0,", "1.0,", "1)", "True"], done.stderr


def test_it_pickles_by_name_for_spawned_processes() -> None:
    factory = lazy("fractions:Fraction")
    assert pickle.loads(pickle.dumps(factory)) == factory
    assert factory.load().__name__ == "Fraction"


def test_a_target_without_module_and_attribute_is_refused_at_declaration() -> None:
    for bad in ("fractions", "fractions:", ":Fraction"):
        with pytest.raises(ValueError, match="module:attribute"):
            lazy(bad)


@pytest.mark.parametrize("target", ["kq_no_such_module:Thing", "fractions:NoSuchClass"])
def test_a_broken_install_names_what_could_not_be_loaded(target: str) -> None:
    with pytest.raises(PluginError, match=f"cannot load {target}"):
        lazy(target)("url", {})
