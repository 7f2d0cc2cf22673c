"""A blocked consumer's wake-up never takes a message out of Redis (issue 11).

kombu's consumers block in BRPOP on the queue lists, which *pops* the message it wakes on: a
consumer that dies, or whose connection went silent, after Redis answered and before the message
is claimed loses it. kq's consumers block on bells instead; these tests stop a consumer in
exactly that window and check that the message is still in its queue for another consumer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from kq.testing.contracts.transport import body_n, envelope
from kq_redis.transport import RedisTransport

#: A consumer blocked on an empty queue in one long BRPOP (no poll ends it while the test runs).
CONSUMER = (
    "import sys\n"
    "from kq_redis import transport\n"
    "transport.POLL_INTERVAL = 600.0\n"
    "t = transport.RedisTransport(sys.argv[1], {'global_keyprefix': sys.argv[2],\n"
    "                                           'socket_timeout': 1200})\n"
    "print(len(t.fetch(['work'], 1, 600.0)), flush=True)\n"
)


@pytest.fixture
def stopped_consumer(redis_url: str, raw: redis.Redis, prefix: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A consumer process blocked in ``fetch`` and stopped (SIGSTOP) there, with its Redis
    client name: what Redis answers it now reaches a socket nobody reads, as after a silent
    cut, and the process can be killed before it reads it."""
    name = f"kqtest-wake-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, f"{redis_url}?client_name={name}", prefix], stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not _blocked(raw, name):
            assert process.poll() is None, "the consumer exited before blocking"
            assert time.monotonic() < deadline, "the consumer never blocked in Redis"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGSTOP)
        yield process, name
    finally:
        process.kill()
        process.wait(30)


def _blocked(raw: redis.Redis, name: str) -> bool:
    """Whether Redis has the client ``name`` blocked in a command."""
    return any(client.get("name") == name and "b" in client.get("flags", "") for client in raw.client_list())


def test_a_consumer_killed_after_its_wake_up_leaves_the_message_to_another(
    stopped_consumer: tuple[subprocess.Popen, str], redis_url: str, raw: redis.Redis, prefix: str
) -> None:
    consumer, name = stopped_consumer
    publisher = RedisTransport(redis_url, {"global_keyprefix": prefix})
    survivor = RedisTransport(redis_url, {"global_keyprefix": prefix})
    try:
        publisher.publish("work", envelope(7))
        # Redis answered the stopped consumer's blocking call: it woke it ...
        assert not _blocked(raw, name)
        # ... without taking the message out of its queue.
        assert publisher.depth("work") == 1
        consumer.kill()  # before it could read the answer, let alone claim
        consumer.wait(30)

        [delivery] = survivor.fetch(["work"], 1, 10.0)
        assert body_n(delivery) == 7
        assert not delivery.redelivered  # it was never claimed
        survivor.ack([delivery])
        assert raw.hlen(f"{prefix}unacked") == 0
    finally:
        publisher.close()
        survivor.close()
