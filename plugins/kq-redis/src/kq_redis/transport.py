"""The Redis broker: redis-py directly, in kombu's key and message layout (see :mod:`.wire`).

Fetching is one Lua script (:data:`.scripts.CLAIM`) that, atomically: moves due delayed messages
to their lists, pops up to ``limit`` messages from the most urgent lists, and records each in
kombu's ``unacked`` hash and ``unacked_index`` sorted set (scored by lease time) under a tag of
its own. A message therefore always lives in Redis (in a list, a delayed set or the unacked
hash) until it is acked; a consumer that dies leaves its leases behind, and the next fetch of any
consumer gives back those older than ``visibility_timeout``, flagged as redelivered.

When nothing is ready, ``fetch`` blocks in BRPOP on the queues' *bells* (``_kq.bell.<queue>``),
never on their lists: a blocking pop on a list takes the message out of Redis, and a consumer
that dies, or whose connection went silent, before its claim would lose it (kombu's consumers
cross that window with every message). A bell carries nothing, so a ring popped into a dead
process or connection costs a wake-up, not a message. Every kq publish, give-back and broadcast
rings the bell after its message is in Redis; a bell holds one ring, and a claim that leaves
messages behind rings again for the next blocked consumer. Messages pushed without a ring (by
Celery clients: a plain LPUSH) are found by the poll: a consumer blocks at most
:data:`POLL_INTERVAL` before it claims again. A consumer also wakes by itself when the next
delayed message is due and when its fetch timeout ends (the worker times its held jobs by it);
Redis ends a blocked command only on its 100 ms cron tick, so it blocks until one tick before
and polls the last stretch in 10 ms steps. A fetch that comes less than a tick after a claim
found nothing goes straight to the bells, its acks in the same write: an idle worker's turn is
then one round trip, not two.

Acks are one pipelined MULTI; rejects and give-backs are conditional on the lease still being
the caller's (:data:`.scripts.GIVE_BACK`), so a lease that expired and went to someone else is
never pushed twice.

Connection loss raises :class:`~kq.exceptions.BrokerUnavailable`. ``close()`` on an instance
that has raised it only drops its connections: the kernel keeps the deliveries it fetched and
acks them through a new instance (leases are in Redis, not in the connection), and a process
that never comes back leaves them to the visibility timeout.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, cast

import attrs
import redis

from kq.exceptions import BrokerUnavailable
from kq.protocol import as_utc
from kq.transport import Delivery, Envelope, Transport, TransportCapabilities, dead_letter_queue

from . import TRANSPORT_CAPABILITIES, TRANSPORT_SCHEMES, scripts, wire
from .connection import TRANSPORT_OPTIONS, Unavailable, connection_pool, parse_options
from .link import Link, Script

log = logging.getLogger("kq.redis")

#: Redis ends blocked commands on its cron tick (every 100 ms at the default ``hz 10``).
TICK = 0.1
#: Pace of the polls in the last tick before a delayed message is due.
APPROACH_STEP = 0.01
#: Seconds a bell is kept: only consumers blocked at the time need it.
BELL_TTL = 60
#: Longest block on the bells (s): how late a message pushed without a ring (by a Celery client)
#: can be found by a consumer that was idle.
POLL_INTERVAL = 1.0
_MAX_ARGS = 1000


@attrs.frozen
class Lease:
    """A delivery's tag: all it takes to ack or give back the message, from any instance."""

    tag: str
    #: The lease's score in the unacked index; a give-back happens only while it is unchanged.
    stamp: str
    queue: str
    raw: bytes = attrs.field(repr=False)


@attrs.frozen
class _Plan:
    """The keys and arguments for fetching one ordered set of queues."""

    queues: tuple[str, ...]
    keys: tuple[str, ...]  # KEYS of the claim script
    names: tuple[str, ...]  # each queue as a JSON string
    bells: tuple[str, ...]  # what BRPOP watches
    members: frozenset[str]  # the queues in any order: what an empty claim is remembered by


class RedisTransport(Transport):
    """A broker on Redis that Celery clients and workers can share.

    Options (``broker_transport_options``): ``visibility_timeout`` (s, 3600), ``priority_steps``
    ([0, 3, 6, 9]), ``global_keyprefix`` (""), ``unacked_key`` ("unacked"),
    ``unacked_index_key`` ("unacked_index"), ``socket_timeout`` (s, 30),
    ``socket_connect_timeout`` (s, 5); the first five mean what they mean in kombu.
    ``native_delay`` (true): false pushes a message with an ``eta`` to its queue at once, for
    Celery workers, which read only the queue (the worker that takes it holds it until due).
    """

    capabilities: ClassVar[TransportCapabilities] = TRANSPORT_CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        opts = parse_options(self.options, TRANSPORT_OPTIONS)
        self._pool = connection_pool(url, opts, TRANSPORT_SCHEMES)
        self._redis = redis.Redis(connection_pool=self._pool)
        self._keys = wire.Keys(
            opts.global_keyprefix,
            opts.priority_steps,
            opts.global_keyprefix + opts.unacked_key,
            opts.global_keyprefix + opts.unacked_index_key,
        )
        self._visibility = opts.visibility_timeout
        self._native_delay = opts.native_delay
        self._max_block = opts.socket_timeout / 2  # a blocked read must not look like a dead link
        self._steps = "".join(str(step) for step in opts.priority_steps)
        self._claim_script = Script(scripts.CLAIM)
        self._push_script = Script(scripts.PUSH)
        self._link = Link(self._pool, [self._claim_script, self._push_script])  # claim, ack, wake, publish
        self._give_back_script = self._redis.register_script(scripts.GIVE_BACK)
        self._ready_script = self._redis.register_script(scripts.READY)
        self._broadcast_script = self._redis.register_script(scripts.BROADCAST)
        self._tag_prefix = f"{uuid.uuid4().hex}."
        self._counter = 0
        self._held: dict[str, Lease] = {}  # fetched by this instance, not acked or rejected
        self._subscriptions: dict[str, str] = {}  # private queue -> channel
        self._renewed_at = 0.0
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._push_key_cache: dict[tuple[str, int], tuple[str, str]] = {}
        #: The queues, time and next due time of the last claim, when it found nothing.
        self._came_up_empty: tuple[frozenset[str], float, float | None] | None = None
        self._turn = 0
        self._broken = False
        self._closed = False
        self._io = Unavailable(BrokerUnavailable, "Redis broker", url, on_error=self._mark_broken)

    def _mark_broken(self) -> None:
        self._broken = True

    # -- publishing -----------------------------------------------------------------------

    def publish(self, queue: str, envelope: Envelope, *, eta: datetime | None = None) -> None:
        raw = wire.encode(envelope, queue)
        priority = wire.wire_priority(envelope.priority)
        due = None if eta is None or not self._native_delay else as_utc(eta).timestamp()
        with self._io:
            if due is None or due <= time.time():
                self._link.run(self._push_script.command(self._push_keys(queue, priority), (raw, BELL_TTL)))
            else:
                member = str(priority).encode() + raw
                self._link.run(("ZADD", self._keys.delayed(queue), f"{due:.6f}", member), *self._ring(queue))

    def _push_keys(self, queue: str, priority: int) -> tuple[str, str]:
        """The list and the bell a message of this wire priority goes to, remembered for the
        next publish (for the first 1,000 pairs: queue names are few in any real app)."""
        keys = self._push_key_cache.get((queue, priority))
        if keys is None:
            keys = (self._keys.bucket(queue, priority), self._keys.bell(queue))
            if len(self._push_key_cache) < 1000:
                self._push_key_cache[(queue, priority)] = keys
        return keys

    def _ring(self, queue: str) -> list[tuple[Any, ...]]:
        """The commands that ring ``queue``'s bell, to send after the message is in Redis: a
        ring wakes one blocked consumer, and a bell holds one (the claim script passes it on
        while messages are left)."""
        bell = self._keys.bell(queue)
        return [("LPUSH", bell, b"1"), ("LTRIM", bell, 0, 0), ("EXPIRE", bell, BELL_TTL)]

    def _ring_on(self, pipe: redis.client.Pipeline, queues: Iterable[str]) -> None:
        """Queue one ring of each of ``queues``' bells on ``pipe``."""
        for queue in dict.fromkeys(queues):
            for command in self._ring(queue):
                pipe.execute_command(*command)

    def publish_many(self, items: Iterable[tuple[str, Envelope]]) -> None:
        """One MULTI of LPUSHes, one per list (chunked): all or none of the messages go."""
        lists: dict[str, list[bytes]] = {}
        queues: dict[str, None] = {}
        for queue, envelope in items:
            key = self._keys.bucket(queue, wire.wire_priority(envelope.priority))
            lists.setdefault(key, []).append(wire.encode(envelope, queue))
            queues[queue] = None
        if not lists:
            return
        pushes = [
            ("LPUSH", key, *messages[start : start + _MAX_ARGS])
            for key, messages in lists.items()
            for start in range(0, len(messages), _MAX_ARGS)
        ]
        rings = [command for queue in queues for command in self._ring(queue)]
        with self._io:
            self._link.run(("MULTI",), *pushes, *rings, ("EXEC",))

    # -- consuming ------------------------------------------------------------------------

    def fetch(self, queues: Sequence[str], limit: int, timeout: float) -> list[Delivery]:
        return self.ack_and_fetch((), queues, limit, timeout)

    def ack_and_fetch(
        self, acks: Sequence[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        """The acks (one MULTI) and the first claim go out in one write."""
        if not queues:
            raise ValueError("fetch needs at least one queue")
        if self._closed:
            self.ack(acks)
            return []
        now = time.monotonic()
        deadline = now + timeout
        plan = self._plan(queues)
        tags = [delivery.tag.tag for delivery in acks]
        before = self._ack_commands(tags)
        # A claim that came up empty a moment ago needs no repeat before blocking: whatever a kq
        # client pushed since has rung the bell the pop waits on. The acks go with the pop.
        pop: list[tuple[Any, ...]] = []
        empty = self._came_up_empty
        if empty is not None and empty[0] == plan.members and now - empty[1] < TICK:
            due_in = None if empty[2] is None else empty[2] - now
            if timeout > TICK and (due_in is None or due_in > TICK):
                pop = self._wait(plan, timeout, due_in)
        with self._io:
            self._renew_subscriptions()
            if pop:
                self._link.run(*before, *pop)
                before = []
            batch, due_in = self._claim(plan, limit, before)
            self._forget(tags)
            while not batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # The claim follows the pop in a write of its own: sent together, Redis would
                # run it the moment a ring wakes the pop, even for a consumer whose connection
                # went silent meanwhile, and lease it messages it can never run.
                pop = self._wait(plan, remaining, due_in)
                if pop:
                    self._link.run(*pop)
                batch, due_in = self._claim(plan, limit)
            return batch

    def _plan(self, queues: Sequence[str]) -> _Plan:
        """The plan for ``queues``, rotated one place per call so no queue is always last."""
        unique = tuple(dict.fromkeys(queues))
        start = self._turn % len(unique)
        self._turn += 1
        order = (*unique[start:], *unique[:start])
        plan = self._plans.get(order)
        if plan is None:
            keys = [self._keys.unacked, self._keys.unacked_index]
            for queue in order:
                keys += [self._keys.delayed(queue), *self._keys.buckets(queue)]
            bells = tuple(self._keys.bell(queue) for queue in order)
            plan = self._plans[order] = _Plan(
                order,
                (*keys, *bells),
                tuple(json.dumps(q) for q in order),
                bells,
                frozenset(order),
            )
        return plan

    def _claim(
        self, plan: _Plan, limit: int, before: Sequence[tuple[Any, ...]] = ()
    ) -> tuple[list[Delivery], float | None]:
        """Send ``before`` (acks: commands safe to repeat) and the claim script in one write;
        return the deliveries and seconds until the next due message."""
        claim = self._claim_script.command(
            plan.keys,
            [limit, self._visibility, self._tag_prefix, self._counter, self._steps, BELL_TTL, *plan.names],
        )
        *_, (stamp, due_in, claimed, expired) = self._link.run(*before, claim)
        now = time.monotonic()
        self._came_up_empty = (
            None if claimed else (plan.members, now, now + float(due_in) if due_in else None)
        )
        self._counter += len(claimed) // 3
        stamp = stamp.decode()
        batch = []
        for position in range(0, len(claimed), 3):
            queue_index, tag, raw = claimed[position : position + 3]
            lease = Lease(tag.decode(), stamp, plan.queues[queue_index], raw)
            self._held[lease.tag] = lease
            envelope, redelivered = wire.decode(raw)
            batch.append(Delivery(envelope, lease.queue, tag=lease, redelivered=redelivered))
        if expired:
            self._give_back_expired(expired)
        return batch, float(due_in) if due_in else None

    def _wait(self, plan: _Plan, remaining: float, due_in: float | None) -> list[tuple[Any, ...]]:
        """Wait until a message may be ready: a bell rings, the next delayed message is due,
        or :data:`POLL_INTERVAL` passes (for messages pushed without a ring). Returns the
        blocking pop to send, or nothing when the wait was a short sleep here."""
        if due_in is not None and due_in < remaining:
            if due_in <= TICK:
                time.sleep(min(max(due_in, 0.0), APPROACH_STEP))
                return []
            remaining = due_in - TICK
        elif remaining <= TICK:
            # BRPOP would end on Redis's next tick, up to 100 ms past the caller's deadline: the
            # last tick is polled in short steps, as for a delayed message coming due, so a
            # worker waiting for a held job's turn wakes on time and a message arriving meanwhile
            # waits at most one step.
            time.sleep(min(remaining, APPROACH_STEP))
            return []
        else:
            remaining -= TICK
        block = min(remaining, self._max_block, POLL_INTERVAL)
        return [("BRPOP", *plan.bells, round(max(0.01, block), 3))]

    def _give_back_expired(self, expired: list[bytes]) -> None:
        """Return leases past the visibility timeout to their queues (whoever took them)."""
        pipe = self._redis.pipeline(transaction=False)
        rings: list[str] = []
        for position in range(0, len(expired), 3):
            tag, score, value = expired[position : position + 3]
            entry = wire.unacked_entry(value) if value else None
            if entry is None:
                log.error(
                    "kq: dropping unacked entry %s: not kombu's [message, exchange, routing_key] layout",
                    tag.decode(errors="replace"),
                )
                targets: list[str] = []
                raw = b""
            else:
                queues = self._route(entry.exchange, entry.routing_key)
                targets = [self._keys.bucket(q, entry.wire_priority) for q in queues]
                raw = entry.raw
                rings += queues
            self._give_back_script(
                keys=[self._keys.unacked, self._keys.unacked_index, *targets],
                args=[tag, score, raw, "R"],
                client=pipe,
            )
        self._ring_on(pipe, rings)
        restored = sum(pipe.execute()[: len(expired) // 3])
        if restored:
            log.warning(
                "kq: gave back %d message(s) leased longer than visibility_timeout=%gs",
                restored,
                self._visibility,
            )

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        """The queues a kombu entry belongs to: its routing key on the default exchange, else
        the queues bound to ``exchange`` with that key (kombu's direct-exchange lookup)."""
        if exchange:
            members = cast("set[bytes]", self._redis.smembers(self._keys.binding(exchange)))  # raw
            rows = [member.decode(errors="replace").split(wire.SEP) for member in members]
            bound = [row[2] for row in rows if len(row) == 3 and row[0] == routing_key]
            if bound:
                return bound
        return [routing_key]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        tags = [delivery.tag.tag for delivery in deliveries]
        if not tags:
            return
        with self._io:
            self._link.run(*self._ack_commands(tags))
        self._forget(tags)

    def _ack_commands(self, tags: Sequence[str]) -> list[tuple[Any, ...]]:
        """One MULTI that drops these leases from the unacked index and hash (chunked)."""
        if not tags:
            return []
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        for start in range(0, len(tags), _MAX_ARGS):
            chunk = tags[start : start + _MAX_ARGS]
            commands += [("ZREM", self._keys.unacked_index, *chunk), ("HDEL", self._keys.unacked, *chunk)]
        return [*commands, ("EXEC",)]

    def _forget(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self._held.pop(tag, None)

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        """Requeue at the consumer end (the message was next), or dead-letter to ``<queue>.dlq``
        with the kernel's dead-letter headers (:func:`.wire.dead_letter_copy`). Nothing happens
        if the lease expired and went back meanwhile: the message is in its queue again either
        way."""
        lease: Lease = delivery.tag
        if requeue:
            target, raw, end = lease.queue, wire.redelivered_copy(lease.raw), "R"
        else:
            target = dead_letter_queue(lease.queue)
            raw, end = wire.dead_letter_copy(lease.raw, lease.queue, reason), "L"
        priority = wire.message_priority(raw)
        with self._io:
            pipe = self._redis.pipeline(transaction=False)
            self._give_back_script(
                keys=[self._keys.unacked, self._keys.unacked_index, self._keys.bucket(target, priority)],
                args=[lease.tag, lease.stamp, raw, end],
                client=pipe,
            )
            self._ring_on(pipe, [target])
            pipe.execute()
        self._held.pop(lease.tag, None)

    # -- inspection -----------------------------------------------------------------------

    def purge(self, queue: str) -> int:
        with self._io:
            purged: int = self._ready_script(
                keys=[self._keys.delayed(queue), *self._keys.buckets(queue)], args=["PURGE"]
            )
            return purged

    def depth(self, queue: str) -> int:
        with self._io:
            depth: int = self._ready_script(
                keys=[self._keys.delayed(queue), *self._keys.buckets(queue)], args=["COUNT"]
            )
            return depth

    # -- fan-out --------------------------------------------------------------------------

    def broadcast(self, channel: str, envelope: Envelope) -> None:
        """Copy ``envelope`` into every subscriber's private queue (one script), and PUBLISH it
        where kombu would for a fanout exchange named ``channel``, so that Celery's receivers
        hear kq's broadcasts too (``celery events``, Flower: see :meth:`.wire.Keys.topic`)."""
        raw = wire.encode(envelope, channel)
        suffix = self._keys.suffix(wire.wire_priority(envelope.priority))
        with self._io:
            pipe = self._redis.pipeline(transaction=False)
            self._broadcast_script(
                keys=[self._keys.subscribers(channel)],
                args=[
                    raw,
                    self._keys.prefix,
                    suffix,
                    self._keys.bell(""),
                    BELL_TTL,
                    *(self._keys.suffix(step) for step in self._keys.steps),
                ],
                client=pipe,
            )
            pipe.publish(self._keys.topic(channel, self._pool.connection_kwargs.get("db", 0)), raw)
            pipe.execute()

    def subscribe(self, channel: str) -> str:
        """Register a private queue ``<channel>.<uuid>``; it lives while this instance fetches.

        The registration expires one visibility timeout after it was last renewed (by a fetch),
        so a subscriber that died unclosed stops collecting broadcasts; a live one that did not
        fetch for that long is registered again by its next fetch.
        """
        queue = f"{channel}.{uuid.uuid4().hex}"
        with self._io:
            self._redis.zadd(self._keys.subscribers(channel), {queue: time.time() + self._visibility})
        self._subscriptions[queue] = channel
        return queue

    def unsubscribe(self, queue: str) -> None:
        channel = self._subscriptions.pop(queue, None)
        if channel is not None:
            with self._io:
                self._drop_subscription(queue, channel)

    def _drop_subscription(self, queue: str, channel: str) -> None:
        """Forget ``queue``: its registration, its messages, and this instance's leases on it."""
        leases = [tag for tag, lease in self._held.items() if lease.queue == queue]
        pipe = self._redis.pipeline(transaction=True)
        # Each command queues on the pipeline (redis-py's types say they return replies).
        pipe.zrem(self._keys.subscribers(channel), queue)
        pipe.delete(*self._keys.buckets(queue))
        if leases:
            pipe.zrem(self._keys.unacked_index, *leases)
            pipe.hdel(self._keys.unacked, *leases)
        pipe.execute()
        for tag in leases:
            del self._held[tag]

    def _renew_subscriptions(self) -> None:
        now = time.time()
        if not self._subscriptions or now - self._renewed_at < self._visibility / 4:
            return
        pipe = self._redis.pipeline(transaction=False)
        for queue, channel in self._subscriptions.items():
            pipe.zadd(self._keys.subscribers(channel), {queue: now + self._visibility})
        pipe.execute()
        self._renewed_at = now

    # -- shutdown -------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Drop the connection and keep the leases: a new instance acks them by tag."""
        self._broken = True
        self.close()

    def close(self) -> None:
        """Give back unacked messages (at the consumer end, in their order) and subscriptions,
        then disconnect. After a connection failure only disconnect: see the module docstring."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._broken and (self._held or self._subscriptions):
                with self._io:
                    for queue, channel in list(self._subscriptions.items()):
                        self._drop_subscription(queue, channel)
                    pipe = self._redis.pipeline(transaction=False)
                    for lease in reversed(list(self._held.values())):
                        bucket = self._keys.bucket(lease.queue, wire.message_priority(lease.raw))
                        self._give_back_script(
                            keys=[self._keys.unacked, self._keys.unacked_index, bucket],
                            args=[lease.tag, lease.stamp, wire.redelivered_copy(lease.raw), "R"],
                            client=pipe,
                        )
                    self._ring_on(pipe, [lease.queue for lease in self._held.values()])
                    pipe.execute()
        finally:
            self._held.clear()
            self._subscriptions.clear()
            self._link.close()
            self._pool.disconnect()
