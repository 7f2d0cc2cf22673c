"""Redis commands written as one packet and read back in order, without redis-py's wrapping.

redis-py's client checks a connection out of its pool, health-checks it, wraps the call in a
retry policy and releases it again around every command; its pipelines build a command stack
and, when they hold a script, ask ``SCRIPT EXISTS`` before each execution. On kq's hot paths
(the broker's claim, ack, wake and publish; the backend's store, read and wait) that bookkeeping
cost more than the commands: a result store went from ~155 to ~70 µs here.

:class:`Link` keeps one connection out of its pool for good, for a transport instance (used by
one thread at a time). :func:`run_pooled` borrows a connection for one exchange, for a backend
shared by many threads and greenlets.

Scripts run by SHA; a server that lost them (a restart, ``SCRIPT FLUSH``) answers NOSCRIPT, and
the batch is sent again after loading them. Only batches whose every command is safe to repeat
(claims, acks, blocking pops are; a publish is sent on its own) may contain a script.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis


class Script:
    """A Lua script known by its SHA1, loaded on first NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class Link:
    """One connection taken from ``pool`` on first use and kept until :meth:`close`."""

    def __init__(self, pool: redis.ConnectionPool, scripts: Sequence[Script]) -> None:
        self._pool = pool
        self._scripts = {script.sha: script for script in scripts}
        self._connection: Any = None

    def run(self, *commands: Sequence[Any]) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order; an error reply
        raises (after every reply is read, so the connection stays in step)."""
        try:
            return self._exchange(commands)
        except redis.exceptions.NoScriptError:
            self._load_scripts()
            return self._exchange(commands)

    def _exchange(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        connection = self._connection
        if connection is None:
            connection = self._connection = self._pool.get_connection()
        try:
            return exchange(connection, commands)
        except redis.exceptions.ResponseError:
            raise  # every reply was read: the connection is in step
        except BaseException:
            self._drop()
            raise

    def _load_scripts(self) -> None:
        self._exchange([("SCRIPT", "LOAD", script.source) for script in self._scripts.values()])

    def _drop(self) -> None:
        """Forget a connection whose replies may be out of step (an error mid-exchange, an
        interrupted read): it is closed, and the next command opens a new one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            self._pool.release(connection)

    def close(self) -> None:
        self._drop()


def exchange(connection: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Send ``commands`` in one write on ``connection`` and return their replies in order. An
    error reply raises, after every reply is read; any other failure leaves the connection out
    of step, and the caller must disconnect it."""
    connection.send_packed_command(connection.pack_commands(commands), check_health=False)
    replies: list[Any] = []
    failure: Exception | None = None
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except redis.exceptions.ResponseError as exc:
            failure = failure or exc
            replies.append(exc)
    if failure is not None:
        raise failure
    return replies


def run_pooled(pool: redis.ConnectionPool, *commands: Sequence[Any]) -> list[Any]:
    """:func:`exchange` on a connection borrowed from ``pool`` for this call only."""
    connection = pool.get_connection()
    try:
        return exchange(connection, commands)
    except redis.exceptions.ResponseError:
        raise  # every reply was read: the connection is in step
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
