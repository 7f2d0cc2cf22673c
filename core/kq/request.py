"""The request a running task sees: what it was called with and where it runs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .protocol import TaskMessage


@attrs.frozen(kw_only=True)
class Request:
    """What a running task knows about its own call (``self.request`` in bound tasks)."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    eta: datetime | None = None
    expires: datetime | None = None
    hostname: str | None = None
    queue: str | None = None
    redelivered: bool = False
    is_eager: bool = False
    priority: int | None = None
    headers: Mapping[str, Any] = attrs.field(factory=dict)
    #: The message this run came from; :meth:`kq.Task.retry` sends it again, changed.
    message: TaskMessage | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def delivery_info(self) -> dict[str, Any]:
        """Where the message came from: ``queue``, ``redelivered`` and ``priority``."""
        return {"queue": self.queue, "redelivered": self.redelivered, "priority": self.priority}

    @classmethod
    def from_message(
        cls,
        message: TaskMessage,
        *,
        hostname: str | None = None,
        queue: str | None = None,
        redelivered: bool = False,
        is_eager: bool = False,
    ) -> Request:
        return cls(
            id=message.id,
            task=message.task,
            args=message.args,
            kwargs=message.kwargs,
            retries=message.retries,
            root_id=message.root_id,
            parent_id=message.parent_id,
            group=message.group,
            eta=message.eta,
            expires=message.expires,
            hostname=hostname,
            queue=queue,
            redelivered=redelivered,
            is_eager=is_eager,
            priority=message.priority,
            headers=message.extra_headers,
            message=message,
        )
