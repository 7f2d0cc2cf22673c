"""The serializer registry: the one place where bytes become objects.

Serializers come from plugins (the built-in json and pickle included) as
:class:`~kq.specs.SerializerSpec`. Decoding goes through :meth:`Serializers.loads`, which refuses
any content type not in the caller's accept set before a single byte is parsed: that is what
keeps pickle out unless the user lists it in ``accept_content``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .exceptions import ConfigurationError, ContentDisallowed, MessageRejected, PluginError


@attrs.frozen
class SerializerSpec:
    """A serialization format, as a plugin declares it in ``kq_serializers``."""

    #: The name users write in ``task_serializer`` and ``accept_content`` (``json``, ``msgpack``).
    name: str
    #: The MIME type carried in each message (``application/json``).
    content_type: str
    dumps: Callable[[Any], bytes]
    #: Must raise (any exception) on input it cannot decode, never return garbage.
    loads: Callable[[bytes], Any]
    #: ``utf-8`` for text formats, ``binary`` for the rest.
    content_encoding: str = "utf-8"
    #: False when loading untrusted bytes can run code (pickle). Such a format is still refused
    #: unless the user lists it in ``accept_content``; the flag lets kq warn when they do.
    safe: bool = True
    description: str = ""


class Serializers:
    """Serializer specs by name and by content type."""

    def __init__(self, specs: Iterable[SerializerSpec]) -> None:
        self._by_name: dict[str, SerializerSpec] = {}
        self._by_type: dict[str, SerializerSpec] = {}
        for spec in specs:
            other = self._by_type.get(spec.content_type)
            if other is not None:
                raise PluginError(f"serializers {other.name!r} and {spec.name!r} both claim the "
                                  f"content type {spec.content_type!r}; disable one")
            self._by_name[spec.name] = spec
            self._by_type[spec.content_type] = spec

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name_or_type: str) -> SerializerSpec:
        """Find a serializer by name (``json``) or content type (``application/json``)."""
        spec = self._by_name.get(name_or_type) or self._by_type.get(name_or_type)
        if spec is None:
            raise ConfigurationError(
                f"no serializer named {name_or_type!r}; installed: {', '.join(self.names)}"
            )
        return spec

    def accept_set(self, accept: Iterable[str]) -> frozenset[str]:
        """Turn an ``accept_content`` list of names or content types into content types."""
        return frozenset(self.get(item).content_type for item in accept)

    def dumps(self, obj: Any, name: str) -> tuple[bytes, SerializerSpec]:
        spec = self.get(name)
        return spec.dumps(obj), spec

    def loads(self, body: bytes, content_type: str, accept: frozenset[str]) -> Any:
        """Decode ``body`` if ``content_type`` is accepted; raise MessageRejected otherwise."""
        if content_type not in accept:
            raise ContentDisallowed(
                f"content type {content_type!r} is not in accept_content "
                f"({', '.join(sorted(accept))})"
            )
        spec = self._by_type.get(content_type)
        if spec is None:
            raise ContentDisallowed(f"no serializer installed for {content_type!r}")
        try:
            return spec.loads(body)
        except Exception as exc:  # any parser error means the bytes are not usable
            raise MessageRejected("decode", f"{spec.name} could not decode the body: {exc}") from None
