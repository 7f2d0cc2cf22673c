"""The serializer registry: the one place where bytes become objects.

Serializers come from plugins (the built-in json and pickle included) as
:class:`~kq.specs.SerializerSpec`. Decoding goes through :meth:`Serializers.loads`, which refuses
any content type not in the caller's accept set before a single byte is parsed: that is what
keeps pickle out unless the user lists it in ``accept_content``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import attrs

from .exceptions import ConfigurationError, ContentDisallowed, MessageRejected, PluginError

#: First-party packages that provide a serializer, by name and content type, for "install" hints.
KNOWN_PACKAGES = {
    "msgpack": "kq-msgpack",
    "application/x-msgpack": "kq-msgpack",
    "yaml": "kq-yaml",
    "application/x-yaml": "kq-yaml",
}


def to_plain(value: Any) -> Any:
    """The ``default`` hook of kq's data formats: a plain value for a type tasks often pass.

    Dates and times become ISO 8601 strings, UUIDs and Decimals strings, sets lists, as
    kombu's json does, so that a task receives the same arguments whichever format carried
    them and a Celery worker can read what kq sends. Any other type raises ``TypeError``
    (which kq reports as an ``EncodeError`` naming the task).
    """
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(
        f"Object of type {type(value).__name__} is not serializable (besides plain "
        "data, kq encodes datetime, date, time, UUID, Decimal and sets)"
    )


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
                raise PluginError(
                    f"serializers {other.name!r} and {spec.name!r} both claim the "
                    f"content type {spec.content_type!r}; disable one"
                )
            self._by_name[spec.name] = spec
            self._by_type[spec.content_type] = spec

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name_or_type: str) -> SerializerSpec:
        """Find a serializer by name (``json``) or content type (``application/json``)."""
        spec = self._by_name.get(name_or_type) or self._by_type.get(name_or_type)
        if spec is None:
            package = KNOWN_PACKAGES.get(name_or_type)
            hint = f"; install it with: pip install {package}" if package else ""
            raise ConfigurationError(
                f"no serializer named {name_or_type!r}; installed: {', '.join(self.names)}{hint}"
            )
        return spec

    def accept_set(self, accept: Iterable[str]) -> frozenset[str]:
        """Turn an ``accept_content`` list of names or content types into content types."""
        return frozenset(self.get(item).content_type for item in accept)

    def unsafe_warning(
        self, task_serializer: str, result_serializer: str, accept_content: Iterable[str]
    ) -> str | None:
        """One warning about every setting that names a format which runs code when loading
        (pickle), or None: logged once when an app's settings are built."""
        accepted = [self.get(item).name for item in accept_content]
        problems = []
        unsafe_accepted = [name for name in accepted if not self._by_name[name].safe]
        if unsafe_accepted:
            problems.append(
                f"accept_content lists {', '.join(unsafe_accepted)}, so anyone who "
                "can write to the broker can run code in this app's workers"
            )
        task = self.get(task_serializer)
        if not task.safe and task.name not in accepted:
            problems.append(
                f"task_serializer is {task.name} but accept_content ({', '.join(accepted)}) "
                f"does not list it, so workers with these settings reject the tasks this app "
                f"sends; listing it (accept_content={[*accepted, task.name]!r}) would let anyone "
                f"who can write to the broker run code in them"
            )
        result = self.get(result_serializer)
        if not result.safe:
            problems.append(
                f"result_serializer is {result.name}, so anyone who can write to the "
                "result backend can run code in every client that reads a result"
            )
        if not problems:
            return None
        names = sorted({*unsafe_accepted, *(s.name for s in (task, result) if not s.safe)})
        return (
            f"kq: {'; '.join(problems)}. {', '.join(names)} runs code while loading: use it "
            f"only where only trusted clients can write to the broker and the result "
            f"backend, or use json (or msgpack, a package away)"
        )

    def dumps(self, obj: Any, name: str) -> tuple[bytes, SerializerSpec]:
        spec = self.get(name)
        return spec.dumps(obj), spec

    def loads(self, body: bytes, content_type: str, accept: frozenset[str]) -> Any:
        """Decode ``body`` if ``content_type`` is accepted; raise MessageRejected otherwise."""
        if content_type not in accept:
            raise ContentDisallowed(self._refusal(content_type, accept))
        spec = self._by_type.get(content_type)
        if spec is None:
            raise ContentDisallowed(f"no serializer installed for {content_type!r}")
        try:
            return spec.loads(body)
        except Exception as exc:  # any parser error means the bytes are not usable
            why = str(exc) or type(exc).__name__  # msgpack's StackError says nothing else
            raise MessageRejected("decode", f"{spec.name} could not decode the body: {why}") from None

    def _refusal(self, content_type: str, accept: frozenset[str]) -> str:
        """Why a content type is refused, and how to accept it (and why not to, if unsafe)."""
        accepted = sorted(self._by_type[t].name if t in self._by_type else t for t in accept)
        spec = self._by_type.get(content_type)
        if spec is None:
            package = KNOWN_PACKAGES.get(content_type)
            hint = f"; to decode it, pip install {package} and list it there" if package else ""
            return f"content type {content_type!r} is not in accept_content ({', '.join(accepted)}){hint}"
        opt_in = f"accept_content={[*accepted, spec.name]!r}"
        text = f"content type {content_type!r} ({spec.name}) is not in accept_content ({', '.join(accepted)})"
        if spec.safe:
            return f"{text}; to decode it, list it: {opt_in}"
        return (
            f"{text}; {spec.name} runs code while loading, so anyone who can write to the "
            f"broker could run code on this worker: accept it only on a broker only trusted "
            f"clients can write to, with {opt_in}"
        )
