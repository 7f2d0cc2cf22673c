"""Results in memcached, through pymemcache.

Each result is one item, ``<key_prefix>celery-task-meta-<task id>``, holding
:meth:`kq.keyvalue.Record.pack`'s framing (state and expiry beside the Celery result meta).
With several servers each key lives on one of them, chosen by rendezvous hashing over the
server list in the URL: every client with the same list picks the same server, and a server
that is down makes its share of keys unavailable (:class:`~kq.exceptions.BackendUnavailable`,
which the worker retries) instead of silently moving them to another server, which would split
a counter or a claim in two.

memcached is a cache: it evicts items when its memory is full and keeps nothing across a
restart. A result, a chord's counter or a unique task's claim may vanish early; see the README.

- **Expiry.** memcached counts whole seconds from a clock that ticks once a second, so an item
  given ``n`` seconds may go after ``n - 1``. Items are given one second more than asked; reads
  check the exact expiry kept in the record. memcached takes an expiry over 30 days as a Unix
  time, so longer ones are sent as the time they end.
- **Counters** are memcached's own unsigned 64-bit numbers, stored with an offset of ``2**63``
  so that they can go negative: ``incr`` (or ``decr`` for a negative amount) is atomic on the
  server, a missing counter is created with ``add`` (atomic: a concurrent creator makes the
  loser ``incr`` instead), and ``touch`` sets its expiry after each call.
- **Claims** are taken with ``add`` (atomic), and a lapsed one is taken over with ``gets`` +
  ``cas`` (only if nobody changed it in between); ``release`` also goes through ``cas``, with
  an expiry in the past, which deletes the item only if the caller still holds it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError

from kq.backend import StoredResult
from kq.config import reject_unknown_options, safe_url
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.keyvalue import KeyValueBackend, Record

from . import CAPABILITIES, SCHEMES

DEFAULT_PORT = 11211
#: memcached's default largest item (its ``-I`` option): key, value and item header together.
DEFAULT_MAX_VALUE_SIZE = 1024 * 1024
#: What memcached keeps beside the value in an item (header, CAS, suffix), counted generously.
ITEM_OVERHEAD = 96
#: memcached takes an expiry above this many seconds as a Unix time.
RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600
#: Keys per ``get`` request in :meth:`MemcachedBackend.get_many`.
GET_MANY_CHUNK = 100
#: Counters are stored plus this, since memcached's numbers are unsigned.
OFFSET = 1 << 63
MAX_KEY = 250
_CLAIM_MAGIC = b"kq-claim-1\n"
OPTIONS = (
    "key_prefix",
    "connect_timeout",
    "timeout",
    "max_pool_size",
    "max_value_size",
    "tls",
    "tls_ca_file",
)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class ResultTooLarge(ValueError):
    """A result is larger than memcached keeps. Not a connection error: retrying cannot help."""


def servers_of(url: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` of each server in ``memcached://h1:p1,h2:p2/`` (``;`` separates
    them too, as in Celery's ``cache+memcached://h1:p1;h2:p2/``)."""
    shown = safe_url(url)
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SCHEMES:
        raise ConfigurationError(f"{shown} is not a memcached:// URL")
    hosts, _, path = rest.partition("/")
    if path.strip("/") or "?" in hosts or "@" in hosts:
        raise ConfigurationError(
            f"{shown}: a memcached URL names only its servers, memcached://host:port[,host:port]/; "
            f"options go in result_backend_options"
        )
    servers = []
    for part in filter(None, (p.strip() for p in re.split(r"[,;]", hosts))):
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", part)
        if match is None:
            raise ConfigurationError(f"{shown}: {part!r} is not host, host:port or [ipv6]:port")
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4) or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise ConfigurationError(f"{shown}: port {port} is out of range")
        servers.append((host, port))
    if not servers:
        raise ConfigurationError(f"{shown} names no server; write memcached://host:port/")
    return list(dict.fromkeys(servers))


def item_key(key: str) -> bytes:
    """``key`` as memcached accepts it (printable ASCII without spaces, at most 250 bytes):
    other bytes, ``%`` and ``~`` are percent-encoded, so distinct keys stay distinct; a key
    still too long is replaced by ``~`` and its SHA-256."""
    raw = key.encode("utf-8")
    encoded = b"".join(bytes((b,)) if 0x21 <= b <= 0x7D and b != 0x25 else b"%%%02X" % b for b in raw)
    if len(encoded) > MAX_KEY:
        encoded = b"~" + hashlib.sha256(raw).hexdigest().encode()
    return encoded


def expiry(seconds: float | None, now: float | None = None) -> int:
    """memcached's exptime for an item that must live ``seconds`` (``None``: for ever)."""
    if seconds is None:
        return 0
    whole = max(math.ceil(seconds), 0) + 1
    if whole > RELATIVE_EXPIRY_LIMIT:
        return int(time.time() if now is None else now) + whole
    return whole


def _number(options: Mapping[str, Any], name: str, default: float, kind: type = float) -> Any:
    value = options.get(name, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ConfigurationError(
            f"the memcached backend option {name} must be a positive number, not {value!r}"
        )
    return number


def _flag(options: Mapping[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"the memcached backend option {name} must be true or false, not {value!r}")


class MemcachedBackend(KeyValueBackend):
    """A result backend on one or more memcached servers.

    Options (``result_backend_options``):

    - ``key_prefix`` (``""``): put in front of every key, so that several apps share servers.
    - ``connect_timeout`` (``5``) and ``timeout`` (``5``): seconds to connect, and to wait for
      an answer, before the server counts as unavailable.
    - ``max_pool_size`` (``32``): connections kept per server and process (one per thread
      that talks to the server at the same moment).
    - ``max_value_size`` (``1048576``): the largest item the servers keep (memcached's ``-I``);
      a larger result raises :class:`ResultTooLarge` instead of being sent.
    - ``tls`` (``false``): talk TLS (memcached's ``-Z``; ElastiCache in-transit encryption),
      checking the server's certificate and host name against the system's CAs, or against
      ``tls_ca_file`` (a PEM bundle) when given.
    """

    capabilities = CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        reject_unknown_options("memcached backend options", self.options, OPTIONS)
        self.servers = servers_of(url)
        self.prefix = str(self.options.get("key_prefix", ""))
        self.connect_timeout = _number(self.options, "connect_timeout", 5.0)
        self.timeout = _number(self.options, "timeout", 5.0)
        self.max_pool_size = _number(self.options, "max_pool_size", 32, int)
        self.max_value_size = _number(self.options, "max_value_size", DEFAULT_MAX_VALUE_SIZE, int)
        self.tls = _flag(self.options, "tls")
        self.tls_ca_file = self.options.get("tls_ca_file") or None
        if self.tls_ca_file and not self.tls:
            raise ConfigurationError("the memcached backend option tls_ca_file needs tls: true")
        if self.tls_ca_file and not os.path.isfile(self.tls_ca_file):
            raise ConfigurationError(f"the memcached backend option tls_ca_file: no file {self.tls_ca_file}")
        self._names = [f"{host}:{port}".encode() for host, port in self.servers]
        self._clients: list[PooledClient] = []
        self._pid = 0
        self._lock = threading.Lock()

    # -- connections ----------------------------------------------------------------------

    def _pool(self) -> list[PooledClient]:
        """One thread-safe pool of connections per server, made again in a forked child (whose
        copies of the parent's sockets it must not share)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    tls = ssl.create_default_context(cafile=self.tls_ca_file) if self.tls else None
                    self._clients = [
                        PooledClient(
                            server,
                            connect_timeout=self.connect_timeout,
                            timeout=self.timeout,
                            no_delay=True,
                            max_pool_size=self.max_pool_size,
                            default_noreply=False,
                            tls_context=tls,
                        )
                        for server in self.servers
                    ]
                    self._pid = os.getpid()
        return self._clients

    def _server(self, key: bytes) -> int:
        """The index of the server that keeps ``key`` (rendezvous hashing: the same for every
        client with the same servers, and only 1/n of the keys move when one is added)."""
        if len(self._names) == 1:
            return 0
        scores = [hashlib.blake2b(name + b"\0" + key, digest_size=8).digest() for name in self._names]
        return scores.index(max(scores))

    def _call(self, index: int, command: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``command`` on server ``index``, as :class:`BackendUnavailable` when it cannot be
        reached (pymemcache drops the broken connection; the next call opens a new one)."""
        client = self._pool()[index]
        try:
            return getattr(client, command)(*args, **kwargs)
        except (OSError, MemcacheUnexpectedCloseError) as exc:
            host, port = self.servers[index]
            raise BackendUnavailable(
                f"memcached at {host}:{port} ({safe_url(self.url)}) is unavailable: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _on(self, key: bytes, command: str, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._server(key), command, key, *args, **kwargs)

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                for client in self._clients:
                    client.close()
            self._clients, self._pid = [], 0

    # -- results (KeyValueBackend) ----------------------------------------------------------

    def put_record(self, key: str, record: Record) -> None:
        item, value = item_key(key), record.pack()
        if len(value) + len(item) + ITEM_OVERHEAD > self.max_value_size:
            raise self._too_large(key, len(value))
        remaining = None if record.expires_at is None else record.expires_at - time.time()
        try:
            self._on(item, "set", value, expire=expiry(remaining))
        except MemcacheServerError as exc:  # a server started with a smaller -I than max_value_size
            if "too large" in str(exc).lower():
                raise self._too_large(key, len(value)) from exc
            raise

    def _too_large(self, key: str, size: int) -> ResultTooLarge:
        return ResultTooLarge(
            f"{key} is {size} bytes with its framing; memcached keeps items up to its -I size "
            f"(max_value_size={self.max_value_size} bytes, 1 MiB by default): return less from the "
            f"task, keep large results elsewhere, or start memcached with a larger -I and raise "
            f"max_value_size"
        )

    def get_record(self, key: str) -> Record | None:
        value = self._on(item_key(key), "get")
        return None if value is None else Record.unpack(value)

    def delete_record(self, key: str) -> None:
        self._on(item_key(key), "delete")

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """Every server's share of the keys in ``get`` requests of :data:`GET_MANY_CHUNK` keys."""
        items = [item_key(self.key(task_id)) for task_id in task_ids]
        shares: dict[int, list[bytes]] = {}
        for item in dict.fromkeys(items):
            shares.setdefault(self._server(item), []).append(item)
        found: dict[bytes, bytes] = {}
        for index, share in shares.items():
            for start in range(0, len(share), GET_MANY_CHUNK):
                found.update(self._call(index, "get_many", share[start : start + GET_MANY_CHUNK]))
        return [
            self._stored(task_id, Record.unpack(found[item]) if item in found else None)
            for task_id, item in zip(task_ids, items, strict=True)
        ]

    # -- counters ---------------------------------------------------------------------------

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        item = item_key(f"{self.prefix}kq-counter:{key}")
        exptime = expiry(expires)
        while True:
            if amount >= 0:
                value = self._on(item, "incr", amount)
            else:
                value = self._on(item, "decr", -amount)
            if value is not None:
                self._on(item, "touch", expire=exptime)  # each call sets (or drops) the expiry
                return int(value) - OFFSET
            if self._on(item, "add", b"%d" % (OFFSET + amount), expire=exptime):
                return amount
            # another process created it between our incr and add: count on it

    def delete_counter(self, key: str) -> None:
        self._on(item_key(f"{self.prefix}kq-counter:{key}"), "delete")

    # -- claims -----------------------------------------------------------------------------

    @staticmethod
    def _holder(value: bytes | None) -> tuple[str, float] | None:
        if value is None or not value.startswith(_CLAIM_MAGIC):
            return None
        expires_at, _, holder = value[len(_CLAIM_MAGIC) :].partition(b"\n")
        try:
            return holder.decode("utf-8"), float(expires_at)
        except ValueError:
            return None

    def claim(self, key: str, value: str, expires: float) -> str | None:
        item = item_key(f"{self.prefix}kq-claim:{key}")
        exptime = expiry(expires)
        while True:
            data = b"".join(
                (_CLAIM_MAGIC, repr(time.time() + expires).encode(), b"\n", value.encode("utf-8"))
            )
            if self._on(item, "add", data, expire=exptime):
                return None
            current, token = self._on(item, "gets")
            if current is None:
                continue  # gone since the add: race for it again
            held = self._holder(current)
            if held is not None and held[1] > time.time():
                return held[0]
            # lapsed (memcached keeps it up to a second longer): take it over unless changed meanwhile
            if self._on(item, "cas", data, token, expire=exptime):
                return None

    def release(self, key: str, value: str) -> None:
        item = item_key(f"{self.prefix}kq-claim:{key}")
        while True:
            current, token = self._on(item, "gets")
            held = self._holder(current)
            if held is None or held[0] != value:
                return
            # cas with an expiry in the past deletes the item, only if nobody changed it meanwhile
            if self._on(item, "cas", current, token, expire=-1) is not False:
                return
