"""Contract suites: the definition of "works" for each plugin area.

A plugin's tests subclass the suite for its area and provide one fixture (the URL, or the pool
name); every test then runs against the plugin for real. See PLUGIN_GUIDE.md.
"""

from .backend import BackendContract
from .compression import CompressionContract
from .pool import PoolContract
from .schedule_store import ScheduleStoreContract
from .serializer import SerializerContract
from .signer import SignerContract
from .transport import TransportContract

__all__ = [
    "BackendContract",
    "CompressionContract",
    "PoolContract",
    "ScheduleStoreContract",
    "SerializerContract",
    "SignerContract",
    "TransportContract",
]
