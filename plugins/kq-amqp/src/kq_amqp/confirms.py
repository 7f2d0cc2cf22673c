"""Publishing a batch on a channel in confirm mode with one wait for all of RabbitMQ's confirms.

py-amqp confirms a publish by waiting for the next ``basic.ack`` or ``basic.nack`` on the channel
before returning, one round trip per message. A batch does not need that: once a channel is in
confirm mode, RabbitMQ numbers its publishes 1, 2, 3, ... (the *publish sequence*, never reset
while the channel lives) and answers each number with an ack or a nack, either alone or, with
``multiple``, for every number up to it. Publishing the whole batch and then reading until
every number of the batch is answered costs one round trip, and promises as much: each message
is taken (or refused) when :func:`publish_confirmed` returns.

RabbitMQ may answer out of order (nacks of a full ``reject-publish`` queue arrive before the
multiple-ack that covers the earlier numbers), so :class:`PendingConfirms` settles numbers
individually rather than waiting for the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import amqp


class PendingConfirms:
    """The publish sequence numbers ``first`` .. ``first + count - 1`` until each is acked or
    nacked. Answers for other numbers are ignored: they are not this batch's."""

    def __init__(self, first: int, count: int) -> None:
        self.first = first
        self.remaining = count
        self.nacked = 0
        self._settled = bytearray(count)
        #: every index below this is settled; a multiple answer scans on from here, so all the
        #: answers of a batch scan each index once at most
        self._low = 0

    def ack(self, delivery_tag: int, multiple: bool) -> None:
        self._answer(delivery_tag, multiple, nack=False)

    def nack(self, delivery_tag: int, multiple: bool) -> None:
        self._answer(delivery_tag, multiple, nack=True)

    def _answer(self, delivery_tag: int, multiple: bool, nack: bool) -> None:
        index = delivery_tag - self.first
        if not multiple:
            if 0 <= index < len(self._settled):
                self._settle(index, nack)
            return
        end = min(index + 1, len(self._settled))
        for covered in range(self._low, end):
            self._settle(covered, nack)
        self._low = max(self._low, end)

    def _settle(self, index: int, nack: bool) -> None:
        if not self._settled[index]:
            self._settled[index] = 1
            self.remaining -= 1
            self.nacked += nack


def publish_confirmed(
    connection: Any, channel: amqp.Channel, first: int, messages: Sequence[tuple[amqp.Message, str]]
) -> int:
    """Publish ``messages`` (message, queue) to the default exchange on ``channel``, whose next
    publish sequence number is ``first``, then read ``connection`` (kombu's) until RabbitMQ has
    answered each. Return how many it nacked.

    Whatever else arrives meanwhile is dispatched as usual (deliveries to this connection's
    consumers, say). An exception (a broken connection, a channel error) leaves the channel's
    sequence unknown: the caller must not use the channel for a batch again.
    """
    pending = PendingConfirms(first, len(messages))
    acks, nacks = channel.events["basic_ack"], channel.events["basic_nack"]
    acks.add(pending.ack)
    nacks.add(pending.nack)
    try:
        # In confirm mode py-amqp replaces the channel's ``basic_publish`` by one that waits for
        # the confirm; the class's own publishes without waiting. The answers reach ``pending``
        # through the channel's events, also those read while publishing (py-amqp reads what is
        # pending before each publish, to notice ``connection.blocked``).
        publish = amqp.Channel.basic_publish
        for message, queue in messages:
            publish(channel, message, exchange="", routing_key=queue)
        while pending.remaining:
            connection.drain_events()
    finally:
        acks.discard(pending.ack)
        nacks.discard(pending.nack)
    return pending.nacked
