"""kq: a distributed task queue with a small kernel and plugins for everything else.

The public API is what this module exports; plugins and applications import from here and from
the modules named in PLUGIN_GUIDE.md (kq.transport, kq.backend, kq.pool, kq.specs, kq.testing).
"""

from . import states
from .app import App
from .canvas.mapping import chunks
from .canvas.primitives import chain, chord, group
from .canvas.signature import Signature, signature
from .exceptions import (
    ConfigurationError,
    KQError,
    NotRegistered,
    PluginError,
    TaskError,
    TaskRevoked,
    TimeoutError,
)
from .hookspecs import hookimpl
from .request import Request
from .result import AsyncResult, EagerResult, GroupResult
from .task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "ConfigurationError",
    "EagerResult",
    "GroupResult",
    "KQError",
    "NotRegistered",
    "PluginError",
    "Request",
    "Signature",
    "Task",
    "TaskError",
    "TaskRevoked",
    "TimeoutError",
    "chain",
    "chord",
    "chunks",
    "group",
    "hookimpl",
    "signature",
    "states",
]
