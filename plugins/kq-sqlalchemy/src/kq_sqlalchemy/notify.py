"""One LISTEN connection per backend, shared by every thread waiting for a result in it.

A background thread owns a dedicated psycopg connection in autocommit mode, LISTENs on the
channel and sleeps in ``select`` on its socket (no polling); each notification's payload is a
task id, and the threads watching that id are woken. Waiters register before they read (see
:meth:`Listener.watch`), so a result stored between their read and their sleep still wakes them.

Notifications sent while the connection is down are lost, so after every reconnection all
watchers are woken to read again. Reconnection backs off from 0.1 s to 2 s, and a new watcher
hurries it along rather than wait out the back-off.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from .backend import reason

log = logging.getLogger("kq.sqlalchemy")


class Listener:
    """Wakes the watchers of a key when a notification carrying it arrives on ``channel``.

    ``connect`` opens a new psycopg connection; ``label`` names the server in log lines (no
    password in it).
    """

    def __init__(self, connect: Callable[[], psycopg.Connection], channel: str, label: str) -> None:
        self._connect = connect
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._label = label
        self._state = threading.Condition()
        self._watchers: dict[str, set[threading.Event]] = {}
        self._listening = False
        self._attempts = 0  # connection attempts finished, successful or not
        self._error: Exception | None = None
        self._closed = False
        self._retry_now = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, key: str) -> Iterator[threading.Event]:
        """Register for ``key`` and return once the channel is being listened to; the event is set
        on each notification for ``key`` and after each reconnection. Clear it before every read
        of the result, then wait on it: nothing stored after the read can be missed.

        Raises :class:`psycopg.OperationalError` if no connection to the server can be made.
        """
        event = threading.Event()
        with self._state:
            self._watchers.setdefault(key, set()).add(event)
        try:
            self._wait_listening()
            yield event
        finally:
            with self._state:
                events = self._watchers[key]
                events.discard(event)
                if not events:
                    del self._watchers[key]

    def close(self) -> None:
        """Stop the thread and close its connection."""
        with self._state:
            self._closed = True
            self._state.notify_all()
            thread, self._thread = self._thread, None
        self._retry_now.set()
        self._wake_writer.send(b"x")
        if thread is not None:
            thread.join(30)
        self._wake_reader.close()
        self._wake_writer.close()

    def _wait_listening(self) -> None:
        with self._state:
            if self._closed:
                raise RuntimeError("this result backend is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kq-sqlalchemy-listener", daemon=True)
                self._thread.start()
            if self._listening:
                return
            # Down or connecting: wait for the outcome of an attempt made from now on.
            target = self._attempts + 1
            self._retry_now.set()
            while self._attempts < target and not self._closed:
                self._state.wait()
            if not self._listening:
                raise psycopg.OperationalError(str(self._error or "the backend was closed"))

    def _run(self) -> None:
        delay = 0.1
        lost = False
        while not self._closed:
            self._retry_now.clear()
            try:
                conn = self._listening_connection()
            except psycopg.Error as exc:
                self._attempted(None, exc)
                self._retry_now.wait(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            if lost:
                log.info("kq: LISTEN connection to %s re-established", self._label)
            try:
                self._attempted(conn, None)
                self._receive(conn)
            except (psycopg.Error, OSError) as exc:
                lost = not self._closed
                if lost:
                    log.warning(
                        "kq: lost the LISTEN connection to %s (%s); reconnecting", self._label, reason(exc)
                    )
            finally:
                with self._state:
                    self._listening = False
                conn.close()

    def _listening_connection(self) -> psycopg.Connection:
        conn = self._connect()
        try:
            conn.execute(self._listen)
        except BaseException:
            conn.close()
            raise
        return conn

    def _attempted(self, conn: psycopg.Connection | None, error: Exception | None) -> None:
        """Record an attempt's outcome; after a success wake every watcher, since anything
        notified while no connection was listening was lost."""
        with self._state:
            self._attempts += 1
            self._listening = conn is not None
            self._error = error
            self._state.notify_all()
            if conn is not None:
                for events in self._watchers.values():
                    for event in events:
                        event.set()

    def _receive(self, conn: psycopg.Connection) -> None:
        """Dispatch notifications until closed; raises when the connection breaks."""
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._closed:
                # timeout=0 reads what the socket has and what psycopg already buffered.
                for notify in conn.notifies(timeout=0):
                    with self._state:
                        for event in self._watchers.get(notify.payload, ()):
                            event.set()
                selector.select()
