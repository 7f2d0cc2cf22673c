"""Every spec class a plugin returns from a ``kq_*`` hook, importable from one place.

The transport, backend, pool, serializer, compression and signer specs live beside the
interface they describe; the
scheduler and canvas specs, whose interfaces belong to their own subsystems, are defined here, with
:class:`lazy`, the factory that lets a plugin declare a spec without importing its implementation.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .backend import BackendCapabilities, BackendSpec
from .codec import CompressionSpec, Signer, SignerSpec
from .exceptions import PluginError
from .pool import PoolCapabilities, PoolSpec
from .serialization import SerializerSpec
from .transport import TransportCapabilities, TransportSpec

if TYPE_CHECKING:
    from .beat.store import ScheduleStore


@attrs.frozen
class lazy:  # a factory written like a call in spec declarations, hence the lower case
    """A factory named ``"module:attribute"``, imported on its first call.

    kq imports every installed plugin's entry-point module in every process, so a spec whose
    factory is ``lazy("kq_redis.transport:RedisTransport")`` costs a process that never makes
    that transport nothing: redis-py is imported when the first one is made. What the kernel
    reads before making one (``capabilities``, ``default_concurrency``) cannot come from a class
    that is not imported yet, so the plugin passes it to the spec, and the class uses the same
    object. Only the name is kept, so the factory pickles by name for spawned processes.
    """

    target: str = attrs.field()

    @target.validator
    def _module_and_attribute(self, attribute: attrs.Attribute[str], value: str) -> None:
        module, sep, name = value.partition(":")
        if not (module and sep and name):
            raise ValueError(f"lazy() takes 'module:attribute', got {value!r}")

    def load(self) -> Callable[..., Any]:
        """The named object; importing its module now if nothing has yet."""
        module, _, name = self.target.partition(":")
        try:
            target: Callable[..., Any] = getattr(importlib.import_module(module), name)
            return target
        except (ImportError, AttributeError) as exc:  # a broken install: say which plugin part
            raise PluginError(f"cannot load {self.target}: {exc}") from exc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


@attrs.frozen
class ScheduleTypeSpec:
    """A kind of schedule beat understands, as a plugin declares it in ``kq_schedule_types``."""

    #: The name used in configuration files (``interval``, ``crontab``, ``solar``, ``rrule``).
    name: str
    #: Builds a schedule object from its configuration keywords.
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class ScheduleStoreSpec:
    """Where beat keeps last-run times and its leader lock (``kq_schedule_stores``)."""

    schemes: tuple[str, ...] = attrs.field(converter=tuple[str, ...])
    #: Called as ``factory(url, options)``.
    factory: Callable[[str, Mapping[str, Any]], ScheduleStore]
    description: str = ""


@attrs.frozen
class CanvasPrimitiveSpec:
    """A workflow primitive (``kq_canvas_primitives``); kq's own chain, group and chord are
    registered the same way."""

    #: The ``subtask_type`` carried in serialized signatures.
    name: str
    #: Called as ``factory(mapping, app)``: rebuilds the primitive, a :class:`kq.Signature`
    #: subclass, from its serialized signature mapping (usually its ``from_dict``).
    factory: Callable[[Mapping[str, Any], Any], Any]
    description: str = ""


__all__ = [
    "BackendCapabilities",
    "BackendSpec",
    "CanvasPrimitiveSpec",
    "CompressionSpec",
    "PoolCapabilities",
    "PoolSpec",
    "ScheduleStoreSpec",
    "ScheduleTypeSpec",
    "SerializerSpec",
    "Signer",
    "SignerSpec",
    "TransportCapabilities",
    "TransportSpec",
    "lazy",
]
