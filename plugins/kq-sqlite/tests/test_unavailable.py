"""A database that stays locked past busy_timeout is a passing trouble, not a crash: the
transport and backend raise the kernel's *Unavailable errors, so the worker backs off and
retries instead of stopping."""

import sqlite3

import pytest

from kq.backend import StoredResult
from kq.exceptions import BackendUnavailable, BrokerUnavailable
from kq.plugins import get_plugins
from kq.transport import Envelope


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'locked.sqlite3'}"


@pytest.fixture
def locked(url, tmp_path):
    """Open the file and hold its write lock until the test ends."""
    get_plugins().transport_for(url).factory(url, {}).close()  # create the schema first
    get_plugins().backend_for(url).factory(url, {}).close()
    holder = sqlite3.connect(str(tmp_path / "locked.sqlite3"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    yield
    holder.execute("ROLLBACK")
    holder.close()


def test_locked_broker_raises_broker_unavailable(url, locked):
    # Opening needs the lock too (schema check), so either step may be the one that waits.
    with pytest.raises(BrokerUnavailable, match="locked"):
        transport = get_plugins().transport_for(url).factory(url, {"busy_timeout": 0.2})
        transport.publish("q", Envelope(body=b"{}", content_type="application/json"))


def test_locked_backend_raises_backend_unavailable(url, locked):
    with pytest.raises(BackendUnavailable, match="locked"):
        backend = get_plugins().backend_for(url).factory(url, {"busy_timeout": 0.2})
        backend.store(StoredResult("t", "SUCCESS", b"{}"), ttl=None)
