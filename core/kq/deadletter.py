"""Dead letters: reading, replaying and purging a dead-letter queue, through the transport interface.

A transport with ``capabilities.dead_letter`` moves every message a worker refuses (undecodable,
untrusted, over a limit, unknown task, expired) to ``<queue>.dlq`` with the headers of
:func:`kq.transport.dead_letter_headers`: why, when and from which queue. This module is what
``kq dlq`` does with them, on any such broker, using only :class:`~kq.transport.Transport`.

Looking without taking: the interface has no "peek", so a listing fetches the messages (they are
then leased to this process, invisible to others) and gives them all back with
``reject(requeue=True)``, last first so that the queue keeps its order, also when interrupted. A
peek method in the interface would have to be written for every broker and would not be simpler
for any of them; fetch and give back is what every transport already passes the contract for.

A dead letter's body is untrusted (it may be exactly what the worker refused to decode), so it is
never deserialized here: what is shown comes from headers (``argsrepr``, ``kwargsrepr``) and
sizes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from .transport import (
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_SUFFIX,
    ORIGINAL_QUEUE_HEADER,
    REJECT_REASON_HEADER,
    REJECTED_AT_HEADER,
    Delivery,
    Envelope,
    Transport,
)

#: Messages asked for per fetch while reading a dead-letter queue.
BATCH = 100
#: How long one fetch waits: an empty fetch ends the reading (the queue said it held more, but
#: another consumer took them meanwhile).
FETCH_TIMEOUT = 1.0


@attrs.frozen
class DeadLetter:
    """One dead-lettered message as ``kq dlq`` shows it: its headers and sizes, never its body."""

    #: The dead-letter queue it is in.
    queue: str
    #: Where a replay sends it: the queue that refused it.
    original_queue: str
    task_id: str | None
    task: str | None
    #: ``reason: detail`` as the worker gave it (``unknown-task: task 'x' is not registered
    #: here``); ``None`` for a message the broker dead-lettered by itself.
    reason: str | None
    rejected_at: str | None
    argsrepr: str | None
    kwargsrepr: str | None
    content_type: str
    body_size: int
    headers: Mapping[str, Any] = attrs.field(repr=False)

    @classmethod
    def of(cls, delivery: Delivery) -> DeadLetter:
        envelope = delivery.envelope
        headers = envelope.headers if isinstance(envelope.headers, Mapping) else {}
        original = _text(headers.get(ORIGINAL_QUEUE_HEADER))
        if original is None:  # dead-lettered by the broker itself: the queue's name says whose
            original = delivery.queue.removesuffix(DEAD_LETTER_SUFFIX)
        return cls(
            queue=delivery.queue,
            original_queue=original,
            task_id=_text(headers.get("id")),
            task=_text(headers.get("task")),
            reason=_text(headers.get(REJECT_REASON_HEADER)),
            rejected_at=_text(headers.get(REJECTED_AT_HEADER)),
            argsrepr=_text(headers.get("argsrepr")),
            kwargsrepr=_text(headers.get("kwargsrepr")),
            content_type=envelope.content_type,
            body_size=len(envelope.body),
            headers=headers,
        )

    def matches(self, ids: Sequence[str], reasons: Sequence[str]) -> bool:
        """Whether it has one of ``ids`` (if any given) and a reason containing one of
        ``reasons`` (if any given)."""
        if ids and self.task_id not in ids:
            return False
        return not reasons or any(text in (self.reason or "") for text in reasons)

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``: every field, headers as JSON-safe values."""
        fields = attrs.asdict(self, filter=lambda attribute, _: attribute.name != "headers")
        return {**fields, "headers": {str(k): _json_safe(v) for k, v in self.headers.items()}}


def peek(transport: Transport, dlq: str, limit: int | None = None) -> list[DeadLetter]:
    """The first ``limit`` (or all) dead letters in ``dlq``, left where they are."""
    with _holding(transport, dlq, limit) as held:
        return [DeadLetter.of(delivery) for delivery in held]


def find(transport: Transport, dlq: str, task_id: str) -> DeadLetter | None:
    """The dead letter of task ``task_id`` in ``dlq``, left where it is; ``None`` if absent."""
    with _holding(transport, dlq, None) as held:
        for delivery in held:
            letter = DeadLetter.of(delivery)
            if letter.task_id == task_id:
                return letter
    return None


def replay(
    transport: Transport,
    dlq: str,
    *,
    ids: Sequence[str] = (),
    reasons: Sequence[str] = (),
    limit: int | None = None,
) -> list[DeadLetter]:
    """Move the dead letters of ``dlq`` that match ``ids`` and ``reasons`` (see
    :meth:`DeadLetter.matches`), at most ``limit``, back to their original queues without
    the dead-letter headers; return them.

    Published first, then acked: a crash in between leaves a message in both queues (run
    twice, which at-least-once delivery allows), never in neither. A replayed message that is
    refused again comes back to ``dlq``; it is not taken a second time by the same replay,
    which reads at most what ``dlq`` held when it began.
    """
    scan = limit if not (ids or reasons) else None  # unfiltered: no need to read further
    with _holding(transport, dlq, scan) as held:
        chosen: list[tuple[Delivery, DeadLetter]] = []
        for delivery in held:
            letter = DeadLetter.of(delivery)
            if letter.matches(ids, reasons) and (limit is None or len(chosen) < limit):
                chosen.append((delivery, letter))
        if not chosen:
            return []
        transport.publish_many(
            (letter.original_queue, revived(delivery.envelope)) for delivery, letter in chosen
        )
        transport.ack([delivery for delivery, _ in chosen])
        taken = {id(delivery) for delivery, _ in chosen}
        held[:] = [delivery for delivery in held if id(delivery) not in taken]
    return [letter for _, letter in chosen]


def revived(envelope: Envelope) -> Envelope:
    """``envelope`` without the dead-letter headers, as it was before it was refused."""
    kept = envelope.headers if isinstance(envelope.headers, Mapping) else {}
    headers = {k: v for k, v in kept.items() if k not in DEAD_LETTER_HEADERS}
    return attrs.evolve(envelope, headers=headers)


@contextmanager
def _holding(transport: Transport, dlq: str, limit: int | None) -> Iterator[list[Delivery]]:
    """Fetch up to ``limit`` (or all) messages of ``dlq`` and yield them as a list; on exit,
    give back every delivery still in the list (the caller removes those it acked).

    It reads at most the depth ``dlq`` had at the start, so that messages dead-lettered
    meanwhile (a replay's own among them) are not read, nor read twice.
    """
    held: list[Delivery] = []
    try:
        wanted = transport.depth(dlq)
        if limit is not None:
            wanted = min(wanted, limit)
        while len(held) < wanted:
            batch = transport.fetch([dlq], min(BATCH, wanted - len(held)), FETCH_TIMEOUT)
            if not batch:
                break
            held.extend(batch)
        yield held
    finally:
        for delivery in reversed(held):
            transport.reject(delivery, requeue=True, reason="kq dlq: read")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _json_safe(value: Any) -> Any:
    """Header values as JSON can hold them (AMQP's x-death carries datetimes, bytes)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
