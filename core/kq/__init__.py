"""kq: a distributed task queue with a small kernel and plugins for everything else.

The public API is what this module exports; plugins and applications import from here and from
the modules named in PLUGIN_GUIDE.md (kq.transport, kq.backend, kq.pool, kq.specs, kq.beat,
kq.testing).
"""

from . import signals, states
from .app import App
from .beat import crontab, every, rrule, solar
from .canvas.mapping import chunks
from .canvas.primitives import chain, chord, group
from .canvas.signature import Signature, signature
from .current import Proxy
from .current import current_app as _current_app
from .current import current_task as _current_task
from .exceptions import (
    ConfigurationError,
    KQError,
    MaxRetriesExceededError,
    NotRegistered,
    PluginError,
    Retry,
    TaskError,
    TaskRevoked,
    TimeoutError,
)
from .hookspecs import hookimpl
from .request import Request
from .result import AsyncResult, EagerResult, GroupResult
from .shared import shared_task
from .task import Task

#: The app of the task running here, else the newest App (a proxy: always the current one).
current_app = Proxy(_current_app)
#: The Task running in this context, or a proxy that is false outside tasks.
current_task = Proxy(_current_task)

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "ConfigurationError",
    "EagerResult",
    "GroupResult",
    "KQError",
    "MaxRetriesExceededError",
    "NotRegistered",
    "PluginError",
    "Request",
    "Retry",
    "Signature",
    "Task",
    "TaskError",
    "TaskRevoked",
    "TimeoutError",
    "chain",
    "chord",
    "chunks",
    "crontab",
    "current_app",
    "current_task",
    "every",
    "group",
    "hookimpl",
    "rrule",
    "signals",
    "shared_task",
    "signature",
    "solar",
    "states",
]
