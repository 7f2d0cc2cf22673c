"""kombu's Redis layout: key names and the JSON message envelope, so Celery and kq read each other.

A message is the JSON object kombu's Redis transport stores::

    {"body": "<base64>", "content-encoding": "utf-8", "content-type": "application/json",
     "headers": {...task headers...},
     "properties": {"correlation_id": "...", "reply_to": "...", "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": "<queue>"},
                    "priority": <0-9>, "body_encoding": "base64", "delivery_tag": "<32 hex digits>"}}

in a list named after the queue; producers LPUSH and consumers pop from the right. Priorities
live in sub-lists ``<queue>\\x06\\x16<step>`` for each of kombu's ``priority_steps`` but the
first, which is the queue's own list. On Redis, kombu serves *lower* numbers first (0 is the
most urgent, the opposite of AMQP), while kq's interface says 9 is the highest; so the wire
carries ``9 - priority`` and a kq priority 9 lands in the queue's own list, exactly where a
Celery client's priority 0 does. A message without a priority counts as kq's lowest (0), as on
kq's other brokers, and so travels as wire priority 9.

Every message is parsed defensively: what is not kombu's layout becomes an envelope the kernel
rejects (and dead-letters) instead of an exception in the consumer.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from collections.abc import Mapping
from typing import Any, TypeGuard

import attrs

from kq.transport import Envelope, dead_letter_headers, dead_letter_queue

#: kombu's separator between a queue name and its priority step.
SEP = "\x06\x16"
_PERSISTENT = 2


def wire_priority(priority: int | None) -> int:
    """kombu's Redis priority (0 first) for kq's ``priority`` (9 first; ``None`` counts as 0)."""
    if priority is None:
        return 9
    return 9 - min(max(int(priority), 0), 9)


def kq_priority(wire: Any) -> int | None:
    """The inverse of :func:`wire_priority`; ``None`` if the wire value is not a finite number."""
    if not _finite(wire):
        return None
    return 9 - min(max(int(wire), 0), 9)


@attrs.frozen
class Keys:
    """Names of every key kq-redis uses, with kombu's ``global_keyprefix`` in front."""

    prefix: str
    steps: tuple[int, ...]
    unacked: str
    unacked_index: str

    def suffix(self, wire: int) -> str:
        """What follows a queue's name in the list for this wire priority (kombu's ``_q_for_pri``)."""
        step = max(s for s in self.steps if s <= wire)
        return f"{SEP}{step}" if step else ""

    def bucket(self, queue: str, wire: int) -> str:
        """The list holding ``queue``'s messages of this wire priority."""
        return f"{self.prefix}{queue}{self.suffix(wire)}"

    def buckets(self, queue: str) -> list[str]:
        """``queue``'s lists, in the order they are served."""
        return [self.bucket(queue, step) for step in self.steps]

    def delayed(self, queue: str) -> str:
        """Sorted set of ``queue``'s messages published with an ``eta``, scored by due time."""
        return f"{self.prefix}_kq.delayed.{queue}"

    def bell(self, queue: str) -> str:
        """One-item list that kq publishers push to once a message for ``queue`` is in Redis
        (or due later): ``queue``'s consumers block on it, never on the queue's lists."""
        return f"{self.prefix}_kq.bell.{queue}"

    def subscribers(self, channel: str) -> str:
        """Sorted set of the private queues subscribed to ``channel``, scored by expiry."""
        return f"{self.prefix}_kq.fanout.{channel}"

    def topic(self, exchange: str, db: int) -> str:
        """The pub/sub channel kombu PUBLISHes a fanout exchange's messages on (its
        ``fanout_prefix`` and ``fanout_patterns`` defaults), with routing key ``kq``: Celery's
        event receivers (``celery events``, Flower) bind with ``#``, which matches it."""
        return f"{self.prefix}/{db}.{exchange}/kq"

    def binding(self, exchange: str) -> str:
        """kombu's set of ``routing_key SEP pattern SEP queue`` bound to ``exchange``."""
        return f"{self.prefix}_kombu.binding.{exchange}"


def encode(envelope: Envelope, queue: str) -> bytes:
    """The JSON kombu's Redis transport would have stored for ``envelope`` sent to ``queue``."""
    properties: dict[str, Any] = {}
    if envelope.correlation_id is not None:
        properties["correlation_id"] = envelope.correlation_id
    if envelope.reply_to is not None:
        properties["reply_to"] = envelope.reply_to
    properties.update(
        delivery_mode=_PERSISTENT,
        delivery_info={"exchange": "", "routing_key": queue},
        priority=wire_priority(envelope.priority),
        body_encoding="base64",
        # Unique per message, as kombu's uuid4 is; 16 random bytes in hex cost a tenth of it.
        delivery_tag=os.urandom(16).hex(),
    )
    message = {
        "body": base64.b64encode(envelope.body).decode("ascii"),
        "content-encoding": envelope.content_encoding,
        "content-type": envelope.content_type,
        "headers": dict(envelope.headers),
        "properties": properties,
    }
    return dumps(message)


def decode(raw: bytes) -> tuple[Envelope, bool]:
    """The envelope in ``raw`` and whether it was delivered before.

    Bytes that are not kombu's layout come back as an envelope without headers, which the
    worker rejects as malformed; its body is the raw bytes, for whoever reads the dead letter.
    """
    message = _parse(raw)
    if message is None:
        return _unreadable(raw), False
    properties = message.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    headers = message.get("headers")
    headers = headers if isinstance(headers, dict) else {}
    encoding = message.get("content-encoding")
    encoding = encoding if isinstance(encoding, str) else "utf-8"
    data = _body(message)
    if data is None:
        return _unreadable(raw), False
    content_type = message.get("content-type")
    envelope = Envelope(
        body=data,
        content_type=content_type if isinstance(content_type, str) else "",
        content_encoding=encoding,
        headers=headers,
        priority=kq_priority(properties.get("priority")),
        correlation_id=_text(properties.get("correlation_id")),
        reply_to=_text(properties.get("reply_to")),
    )
    info = properties.get("delivery_info")
    redelivered = bool(headers.get("redelivered")) or (
        isinstance(info, dict) and bool(info.get("redelivered"))
    )
    return envelope, redelivered


def message_priority(raw: bytes) -> int:
    """The wire priority ``raw`` is filed under (kombu's default 0 when it has none)."""
    return _priority_of(_parse(raw))


def redelivered_copy(raw: bytes) -> bytes:
    """``raw`` flagged the way kombu flags a message it restores (``delivery_info.redelivered``).

    kombu also sets a ``redelivered`` *header*; kq does not, because for a task message the
    headers are the task's own and would carry the flag into every retry.
    """
    message = _parse(raw)
    return raw if message is None or not _mark_redelivered(message) else dumps(message)


def dead_letter_copy(raw: bytes, queue: str, reason: str) -> bytes:
    """``raw``, refused by ``queue``, as it goes to its dead-letter queue: with the kernel's
    :func:`~kq.transport.dead_letter_headers`, and the dead-letter queue as its routing key, so
    that a kombu consumer that restores it puts it back there and not into the queue that
    refused it. Bytes that are not kombu's layout become the body of a new message (as
    :func:`decode` reads them), so that they carry the reason too."""
    target = dead_letter_queue(queue)
    message = _parse(raw)
    if message is None or _body(message) is None:
        envelope = _unreadable(raw)
        headers = dead_letter_headers(envelope.headers, queue, reason)
        return encode(attrs.evolve(envelope, headers=headers), target)
    carried = message.get("headers")
    message["headers"] = dead_letter_headers(carried if isinstance(carried, Mapping) else {}, queue, reason)
    properties = message.get("properties")
    if isinstance(properties, dict):
        properties["delivery_info"] = {"exchange": "", "routing_key": target}
    return dumps(message)


@attrs.frozen
class Unacked:
    """A message to give back, read from kombu's unacked hash ``[message, exchange, routing_key]``."""

    raw: bytes  # already flagged as redelivered
    exchange: str
    routing_key: str
    wire_priority: int


def unacked_entry(value: bytes) -> Unacked | None:
    """Parse one value of the unacked hash; ``None`` if it is not kombu's layout."""
    try:
        entry = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(entry, list)
        or len(entry) != 3
        or not isinstance(entry[0], dict)
        or not isinstance(entry[1], str)
        or not isinstance(entry[2], str)
    ):
        return None
    message, exchange, routing_key = entry
    _mark_redelivered(message)
    return Unacked(dumps(message), exchange, routing_key, _priority_of(message))


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # built once


def dumps(message: Mapping[str, Any]) -> bytes:
    text = _encode(message)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from a hostile message): only \u escapes carry it
        return json.dumps(message, separators=(",", ":")).encode("ascii")


def _mark_redelivered(message: dict[str, Any]) -> bool:
    properties = message.get("properties")
    if not isinstance(properties, dict):
        return False
    info = properties.get("delivery_info")
    properties["delivery_info"] = {**(info if isinstance(info, dict) else {}), "redelivered": True}
    return True


def _priority_of(message: dict[str, Any] | None) -> int:
    properties = message.get("properties") if message else None
    wire = properties.get("priority") if isinstance(properties, dict) else None
    if not _finite(wire):
        return 0
    return min(max(int(wire), 0), 9)


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError included; RecursionError: too deep
        return None
    return message if isinstance(message, dict) else None


def _body(message: dict[str, Any]) -> bytes | None:
    """The body bytes of a parsed message; ``None`` if they cannot be read."""
    properties = message.get("properties")
    body = message.get("body")
    try:
        if (
            isinstance(properties, dict)
            and properties.get("body_encoding") == "base64"
            and isinstance(body, str)
        ):
            return base64.b64decode(body, validate=True)
        if isinstance(body, str):
            return body.encode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeEncodeError included: a lone surrogate
        return None
    return b"" if body is None else None


def _unreadable(raw: bytes) -> Envelope:
    return Envelope(body=raw, content_type="", content_encoding="binary", headers={})


def _finite(value: Any) -> TypeGuard[int | float]:
    """A number ``int()`` takes: JSON from other clients may say ``NaN`` or ``Infinity``."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
