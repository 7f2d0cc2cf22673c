"""Every spec class a plugin returns from a ``kq_*`` hook, importable from one place.

The transport, backend, pool and serializer specs live beside the interface they describe; the
scheduler and canvas specs, whose interfaces belong to their own subsystems, are defined here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .backend import BackendCapabilities, BackendSpec
from .pool import PoolCapabilities, PoolSpec
from .serialization import SerializerSpec
from .transport import TransportCapabilities, TransportSpec


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

    schemes: tuple[str, ...] = attrs.field(converter=tuple)
    #: Called as ``factory(url, options)``.
    factory: Callable[[str, Mapping[str, Any]], Any]
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
    "PoolCapabilities",
    "PoolSpec",
    "ScheduleStoreSpec",
    "ScheduleTypeSpec",
    "SerializerSpec",
    "TransportCapabilities",
    "TransportSpec",
]
