"""Remote control of running workers: the wire format and the client side.

A client subscribes to :data:`REPLY_CHANNEL` first (so no reply can come before it listens),
then broadcasts a :class:`Command` on :data:`CHANNEL`. Every worker hears it through the
broadcast listener it shares with revokes (:mod:`kq.worker.control` answers), and each worker
the command is meant for broadcasts a :class:`Reply` on the command's ``reply_to`` channel.
All clients share that channel, each on a private queue of its own, and keep the replies that
carry their command's id: one channel for every client, not one per call, because some brokers
(RabbitMQ) would keep an exchange behind for every call.

A reply is ``{"ok": value}`` or ``{"error": "message"}``, as in Celery. The client collects
replies until ``timeout`` or until every named destination has answered, whichever comes first.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .exceptions import ConfigurationError
from .transport import Envelope

#: The fan-out channel commands are broadcast on.
CHANNEL = "kq.control"
#: The fan-out channel workers broadcast their replies on.
REPLY_CHANNEL = "kq.control.reply"
CONTENT_TYPE = "application/json"

#: Read-only commands (``kq inspect``) and commands that change a worker (``kq control``).
INSPECT_COMMANDS = ("ping", "active", "reserved", "scheduled", "registered", "stats", "active_queues")
CONTROL_COMMANDS = (
    "revoke",
    "rate_limit",
    "time_limit",
    "shutdown",
    "pool_grow",
    "pool_shrink",
    "autoscale",
    "add_consumer",
    "cancel_consumer",
)


@attrs.frozen
class Command:
    """One command, as broadcast to every worker."""

    method: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    #: Worker names that should act on it; ``None`` means every worker.
    destination: tuple[str, ...] | None = None
    reply_to: str = REPLY_CHANNEL
    id: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "method": self.method,
                "arguments": dict(self.arguments),
                "destination": None if self.destination is None else list(self.destination),
                "reply_to": self.reply_to,
                "id": self.id,
            }
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> Command:
        """A ValueError (or KeyError, TypeError) says what is wrong with a malformed one."""
        data = json.loads(body)
        method, arguments, destination = data["method"], data.get("arguments") or {}, data.get("destination")
        if not isinstance(method, str) or not isinstance(arguments, dict):
            raise ValueError("method must be a string and arguments a mapping")
        if destination is not None and (
            not isinstance(destination, list) or not all(isinstance(d, str) for d in destination)
        ):
            raise ValueError("destination must be a list of worker names or null")
        reply_to, command_id = data["reply_to"], data["id"]
        if (
            not isinstance(command_id, str)
            or not isinstance(reply_to, str)
            or not (reply_to == REPLY_CHANNEL or reply_to.startswith(f"{REPLY_CHANNEL}."))
        ):
            raise ValueError(f"id must be a string and reply_to {REPLY_CHANNEL!r} or below it")
        return cls(
            method, arguments, None if destination is None else tuple(destination), reply_to, command_id
        )

    def is_for(self, hostname: str) -> bool:
        return self.destination is None or hostname in self.destination


@attrs.frozen
class Reply:
    """One worker's answer to one command."""

    id: str
    hostname: str
    reply: Any

    def encode(self) -> bytes:
        return json.dumps(
            {"id": self.id, "hostname": self.hostname, "reply": self.reply}, default=repr
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> Reply:
        data = json.loads(body)
        if not isinstance(data["id"], str) or not isinstance(data["hostname"], str):
            raise ValueError("id and hostname must be strings")
        return cls(data["id"], data["hostname"], data.get("reply"))


def broadcast(
    app: Any,
    method: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    destination: Sequence[str] | None = None,
    timeout: float = 1.0,
) -> dict[str, Any]:
    """Send ``method`` to the workers (all, or those named in ``destination``) and return
    ``{worker name: reply}`` for those that answered within ``timeout`` seconds. ``app`` is
    typed ``Any``: the app module sits above this one."""
    if not app.plugins.transport_for(app.conf.broker_url).capabilities.fanout:
        raise ConfigurationError(
            "remote control needs a broker with fan-out (kq-redis, kq-amqp, kq-sqlite); this one has none"
        )
    command = Command(method, dict(arguments or {}), None if destination is None else tuple(destination))
    waiting = set(destination) if destination is not None else None
    replies: dict[str, Any] = {}
    transport = app.new_transport()
    try:
        queue = transport.subscribe(command.reply_to)
        transport.broadcast(CHANNEL, Envelope(command.encode(), CONTENT_TYPE))
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0 and waiting != set():
            deliveries = transport.fetch([queue], 100, remaining)
            if deliveries:
                transport.ack(deliveries)
            for delivery in deliveries:
                try:
                    reply = Reply.decode(delivery.envelope.body)
                except (ValueError, KeyError, TypeError):
                    continue  # not ours to judge: another client's business, or noise
                if reply.id == command.id:
                    replies[reply.hostname] = reply.reply
                    if waiting is not None:
                        waiting.discard(reply.hostname)
        transport.unsubscribe(queue)
    finally:
        transport.close()
    return replies
