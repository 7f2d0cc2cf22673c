"""Redis commands written as one packet and read back in order, without redis-py's wrapping.

redis-py's client checks a connection out of its pool, health-checks it, wraps the call in a
retry policy and releases it again around every command; its pipelines build a command stack
and, when they hold a script, ask ``SCRIPT EXISTS`` before each execution. On kq's hot paths
(the broker's claim, ack, wake and publish; the backend's store, read and wait) that bookkeeping
cost more than the commands: a result store went from ~155 to ~70 µs here.

:class:`Link` keeps one connection out of its pool for good, for a transport instance (used by
one thread at a time). :class:`Links` lends idle links for one exchange each, for a backend
shared by many threads and greenlets.

Scripts run by SHA; a server that lost them (a restart, ``SCRIPT FLUSH``) answers NOSCRIPT, and
the batch is sent again after loading them. Only batches whose every command is safe to repeat
(claims, acks, blocking pops are; a publish is sent on its own) may contain a script.
"""

from __future__ import annotations

import hashlib
import os
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

    def check(self) -> None:
        """Drop the connection if the server closed it (a restart, ``CLIENT KILL``) or it has
        bytes nobody asked for, as redis-py's pool does before lending one: a command sent on
        it could not tell whether the server ran it."""
        connection = self._connection
        if connection is None:
            return
        try:
            dead = connection.can_read()
        except (redis.exceptions.ConnectionError, OSError):
            dead = True
        if dead:
            self._drop()

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


class Links:
    """Links shared by many threads (a result backend's callers): each exchange takes an idle
    one, or a new one, and puts it back after.

    redis-py's pool checks each connection it lends with a ``poll`` (a system call and, with
    threads waiting, a GIL hand-off) besides a ``getpid``, locks and its metrics: more than a
    result store's command costs. An exchange on a link either reads every reply or drops the
    connection, so only a connection the server closed while it lay idle needs care (see
    :meth:`run`). Links of a parent process are forgotten in a forked child, never shared.
    """

    def __init__(self, pool: redis.ConnectionPool, scripts: Sequence[Script] = ()) -> None:
        self._pool = pool
        self._scripts = scripts
        self._idle: list[Link] = []
        self._pid = os.getpid()

    def run(self, *commands: Sequence[Any], idempotent: bool = True) -> list[Any]:
        """:meth:`Link.run` on an idle link. A link that lay idle may hold a connection the
        server has closed since (a restart): ``idempotent`` commands are sent at once and sent
        again on a new connection if it turns out dead; others are sent only after
        :meth:`Link.check`."""
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        try:
            link = self._idle.pop()
        except IndexError:
            link, fresh = Link(self._pool, self._scripts), True
        else:
            fresh = False
            if not idempotent:
                link.check()
        try:
            try:
                return link.run(*commands)
            except redis.exceptions.ConnectionError:
                if fresh or not idempotent:
                    raise
                return link.run(*commands)  # the failed exchange dropped the dead connection
        finally:
            self._idle.append(link)

    def close(self) -> None:
        """Close the idle links' connections (a link in use closes its own on error)."""
        idle, self._idle = self._idle, []
        for link in idle:
            link.close()
