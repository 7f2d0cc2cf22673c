"""YAML bodies: PyYAML's safe dumper and loader (libyaml's C versions when present), no aliases.

Only the *safe* loader ever sees a body: it builds plain values (str, int, float, bool, None,
lists, dicts, plus YAML's timestamps, binary and sets) and refuses every ``!!python/...`` tag,
so a body such as ``!!python/object/apply:os.system [...]`` fails to load instead of running.

Aliases are refused too. ``safe_load`` turns ``*name`` into a second reference to the anchored
value, so a few hundred bytes of nested aliases (a "billion laughs" document) load in
microseconds into a tree with billions of leaves. Harmless until something walks it: a task
that returns or logs its argument would make the worker encode or print every leaf, using
gigabytes and minutes. kq's own messages never contain aliases (the dumper below writes each
value out in full), so refusing them costs nothing legitimate.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

from kq.serialization import to_plain


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, refusing any node built a second time: that is what an alias is."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects or node in self.recursive_objects:
            raise ConstructorError(
                None, None, "YAML aliases (*name) are not accepted in kq messages", node.start_mark
            )
        return super().construct_object(node, deep)


class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The safe dumper, writing a repeated value in full each time (no anchors: the loader
    refuses aliases). Datetimes, dates and sets stay YAML's own timestamps and sets, as with
    kombu's yaml; UUIDs and Decimals become the strings kq's json makes of them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


Dumper.add_multi_representer(object, lambda dumper, value: dumper.represent_data(to_plain(value)))


def dumps(obj: Any) -> bytes:
    return yaml.dump(obj, Dumper=Dumper, allow_unicode=True, sort_keys=False, encoding="utf-8")


def loads(data: bytes) -> Any:
    return yaml.load(data, Loader=Loader)  # the safe loader (above), never yaml.Loader
