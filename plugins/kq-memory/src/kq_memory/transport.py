"""The ``memory://`` broker: the kernel's kombu adapter over kombu's memory transport.

It proves the adapter against the contract suite with no server. Queues live in kombu's
process-wide memory state, so every transport instance of a process sees the same queues.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from kq.kombu_transport import KombuTransport
from kq.transport import TransportCapabilities

from . import TRANSPORT_CAPABILITIES


class MemoryTransport(KombuTransport):
    """kombu's memory transport, polled every 10 ms.

    kombu's virtual transports poll their queues, sleeping ``polling_interval`` (1 s by
    default) between empty rounds; at 10 ms a waiting fetch sees a new message promptly.
    """

    capabilities: ClassVar[TransportCapabilities] = TRANSPORT_CAPABILITIES
    transport_defaults: ClassVar[Mapping[str, Any]] = {"polling_interval": 0.01}
