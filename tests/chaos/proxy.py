"""A TCP proxy for fault injection: forwards 127.0.0.1:<port> to a real server, and can cut the
path silently.

A real network fault (a NAT entry that expired, a firewall that started dropping, a cable pulled
between two switches) does not close anything: no RST, no FIN reaches either end, the sockets stay
open and bytes simply stop arriving. Only timeouts and heartbeats can tell. :meth:`Proxy.cut`
models that: every connection open at the time goes silent for good (its sockets are kept open
and no longer read, so the peers' writes pile up in their send buffers as on a dead path), while
connections opened afterwards work normally, as they would on a new path. ``blackhole_new``
makes new connections go silent too (accepted, then never served), for an outage that lasts;
:meth:`restore` lets new connections through again. ``delay`` adds latency to every chunk.
"""

from __future__ import annotations

import select
import socket
import threading
import time

_CHUNK = 65536
_TICK = 0.05


class _Pair:
    """One proxied connection: the client's socket and ours to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.silent = False

    def close(self) -> None:
        for sock in (self.client, self.server):
            try:
                sock.close()
            except OSError:
                pass


class Proxy:
    """Listens on 127.0.0.1 (an ephemeral port, :attr:`port`) and forwards to ``target``."""

    def __init__(self, target: tuple[str, int], delay: float = 0.0) -> None:
        self.target = target
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._blackhole_new = False
        self.accepted = 0  # connections accepted so far: a reconnect shows as a new one
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def cut(self, *, blackhole_new: bool = False) -> int:
        """Silence every open connection for good; return how many. New connections are served
        unless ``blackhole_new``."""
        with self._lock:
            self._blackhole_new = blackhole_new
            live = [pair for pair in self._pairs if not pair.silent]
            for pair in live:
                pair.silent = True
        return len(live)

    def restore(self) -> None:
        """Serve new connections again (the silenced ones stay dead, as on a real network)."""
        with self._lock:
            self._blackhole_new = False

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()  # the server is down: refuse as it would
                continue
            server.settimeout(None)
            pair = _Pair(client, server)
            with self._lock:
                pair.silent = self._blackhole_new
                self._pairs.append(pair)
                self.accepted += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(pair, source, sink), name="proxy-pump", daemon=True
                ).start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        """Copy ``source`` to ``sink`` until either end closes; stop reading once silent."""
        try:
            while not self._closed.is_set():
                if pair.silent:
                    time.sleep(_TICK)  # keep the sockets open, read and send nothing
                    continue
                readable, _, _ = select.select([source], [], [], _TICK)
                if not readable or pair.silent:
                    continue
                data = source.recv(_CHUNK)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                if not pair.silent:
                    sink.sendall(data)
        except OSError:
            pass
        if not pair.silent:  # a real close (either end) is passed on; a silent pair stays open
            pair.close()
