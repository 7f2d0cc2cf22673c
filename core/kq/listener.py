"""Listening to fan-out channels in a thread of its own, on a broker connection of its own.

A worker hears revokes (:mod:`kq.revoke`) and remote-control commands (:mod:`kq.control`) this
way: one :class:`Listener` subscribes to every channel it is given, hands each broadcast body
to that channel's handler, and reconnects with backoff when the broker goes away. Handlers run
in the listener's thread, so they must not touch state that another thread owns: the worker's
handlers queue such work for its consumer thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .exceptions import BrokerUnavailable
from .transport import Transport

log = logging.getLogger("kq.listener")

#: Longest one fetch blocks, so that the listener sees a stop request quickly (seconds).
LISTEN_SLICE = 1.0
RECONNECT_FIRST, RECONNECT_MAX = 0.25, 10.0

Handler = Callable[[bytes], None]


class Listener:
    """Subscribes to the channels of ``handlers`` and calls each with the bodies broadcast there.

    ``on_reconnect`` runs (in the listener's thread) after a lost connection was opened again,
    since broadcasts sent in between were missed; ``tick`` runs after every fetch. A handler
    that raises is logged and the listener goes on.
    """

    def __init__(
        self,
        app: Any,
        handlers: Mapping[str, Handler],
        *,
        on_reconnect: Callable[[], None] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self._handlers = dict(handlers)
        self._on_reconnect = on_reconnect
        self._tick = tick
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._queues: dict[str, str] = {}  # private queue -> channel

    def connect(self) -> bool:
        """Subscribe now (so that a caller can load state after this without missing a
        broadcast); False when the broker could not be reached: the thread tries again."""
        try:
            self._transport = self.app.new_transport()
            self._queues = {self._transport.subscribe(channel): channel for channel in self._handlers}
        except Exception as exc:
            self.drop(exc)
            return False
        return True

    def start(self) -> None:
        """Listen in a daemon thread. Without a connection (:meth:`connect` was not called or
        failed) the thread opens one shortly, and then runs ``on_reconnect``."""
        self._thread = threading.Thread(target=self._listen, name="kq-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(LISTEN_SLICE * 5)

    def drop(self, exc: BaseException) -> None:
        """Forget a broken connection; the thread opens a new one with backoff."""
        log.warning("kq: broadcast listener lost its connection (%s); reconnecting", exc)
        if self._transport is not None:
            try:
                self._transport.disconnect()
            except Exception:  # it is broken already
                pass
        self._transport = None

    def _listen(self) -> None:
        delay = RECONNECT_FIRST
        while not self._stopping.is_set():
            if self._transport is None:
                if self._stopping.wait(delay):
                    break
                delay = min(RECONNECT_MAX, delay * 2)
                if self.connect() and self._on_reconnect is not None:
                    try:
                        self._on_reconnect()
                    except Exception as exc:
                        self.drop(exc)
                continue
            try:
                deliveries = self._transport.fetch(list(self._queues), 100, LISTEN_SLICE)
                if deliveries:
                    self._transport.ack(deliveries)
                delay = RECONNECT_FIRST
            except (BrokerUnavailable, OSError) as exc:
                self.drop(exc)
                continue
            for delivery in deliveries:
                channel = self._queues.get(delivery.queue)
                if channel is None:
                    continue
                try:
                    self._handlers[channel](delivery.envelope.body)
                except Exception:
                    log.exception("kq: could not handle a broadcast on %s", channel)
            if self._tick is not None:
                self._tick()
        self._close()

    def _close(self) -> None:
        if self._transport is None:
            return
        try:
            for queue in self._queues:
                self._transport.unsubscribe(queue)
            self._transport.close()
        except Exception as exc:  # shutting down: the subscriptions lapse by themselves
            log.debug("kq: could not close the broadcast listener: %s", exc)
        self._transport = None
