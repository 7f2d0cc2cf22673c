"""A real Redis for every test, in database 15, each test under a key prefix of its own.

The prefix (kombu's ``global_keyprefix``) keeps tests apart from each other and from other
runs sharing the server; at teardown exactly the test's keys are deleted, never the database.

Each test also holds a shared lock on the server across processes, which the end-to-end test
that restarts Redis (tests/e2e/test_redis.py) takes exclusively: a test run elsewhere on this
machine then never sees Redis vanish in the middle of a test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from kq.testing.servers import hold

DB = 15


@pytest.fixture
def redis_url() -> Iterator[str]:
    with hold("redis") as (host, port):  # waits while a restart test elsewhere holds it
        yield f"redis://{host}:{port}/{DB}"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test database, for looking behind the plugin's back."""
    client = redis.Redis.from_url(redis_url, protocol=2)
    yield client
    client.close()


@pytest.fixture
def prefix(raw: redis.Redis) -> Iterator[str]:
    name = f"kqtest-{uuid.uuid4().hex[:12]}:"
    yield name
    keys = list(raw.scan_iter(match=f"{name}*", count=1000))
    if keys:
        raw.delete(*keys)
