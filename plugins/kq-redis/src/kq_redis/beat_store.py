"""Beat's schedule store in Redis: the leader lock and the last runs, shared by beats on any
number of machines.

Per namespace (the app's name), under ``global_keyprefix``: the lock is a string key,
``_kq.beat:<namespace>:lock``, holding its holder and expiring by Redis's own clock (``PX``), so
the machines' clocks never have to agree; the last runs are a hash, ``_kq.beat:<namespace>:runs``,
from entry name to the slot's ISO 8601 text. Every operation that reads before it writes is one
Lua script, atomic in Redis: taking or renewing the lock, releasing it only when it is ours, and
advancing an entry only while the lock is ours and the entry still holds the expected slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import redis

from kq.beat import ScheduleStore

from . import BACKEND_SCHEMES
from .connection import BACKEND_OPTIONS, Unavailable, connection_pool, parse_options

#: The backend's options: the key prefix and the socket timeouts.
OPTIONS = BACKEND_OPTIONS
KEY_PREFIX = "_kq.beat:"

#: KEYS: the lock; ARGV: holder, lease (ms). Takes a free lock (SET NX PX), or renews it when it
#: is already the holder's. Returns 1 when the holder has the lock afterwards, else 0.
ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
#: KEYS: the lock; ARGV: the holder that must still have it for it to be dropped.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: KEYS: the lock, the runs hash; ARGV: holder, entry, expected slot ('' for no record), slot.
#: Returns 1 when the slot was written, 0 when the lock or the expected slot did not match.
ADVANCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[3] == '' then
  if current then return 0 end
elseif current ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
return 1
"""


class RedisScheduleStore(ScheduleStore):
    """Options (``beat_store_options``): ``global_keyprefix``, ``socket_timeout`` (s, 30) and
    ``socket_connect_timeout`` (s, 5), as for the result backend."""

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        options = dict(options)
        namespace = options.pop("namespace")
        opts = parse_options(options, OPTIONS)
        self.url = url
        self._pool = connection_pool(url, opts, BACKEND_SCHEMES)
        self._redis = redis.Redis(connection_pool=self._pool)
        base = f"{opts.global_keyprefix}{KEY_PREFIX}{namespace}:"
        self._lock_key, self._runs_key = f"{base}lock", f"{base}runs"
        self._acquire = self._redis.register_script(ACQUIRE)
        self._release = self._redis.register_script(RELEASE)
        self._advance = self._redis.register_script(ADVANCE)
        self._io = Unavailable(ConnectionError, "Redis schedule store", url)

    def acquire(self, holder: str, lease: float) -> bool:
        with self._io:
            return bool(self._acquire(keys=[self._lock_key], args=[holder, max(1, round(lease * 1000))]))

    def release(self, holder: str) -> None:
        with self._io:
            self._release(keys=[self._lock_key], args=[holder])

    def leader(self) -> str | None:
        with self._io:
            holder = cast("bytes | None", self._redis.get(self._lock_key))  # replies are not decoded
        return None if holder is None else holder.decode()

    def last_runs(self) -> Mapping[str, datetime]:
        with self._io:
            runs = cast("dict[bytes, bytes]", self._redis.hgetall(self._runs_key))  # not decoded
        return {entry.decode(): datetime.fromisoformat(slot.decode()) for entry, slot in runs.items()}

    def advance(self, holder: str, entry: str, expected: datetime | None, slot: datetime) -> bool:
        args = [holder, entry, "" if expected is None else expected.isoformat(), slot.isoformat()]
        with self._io:
            return bool(self._advance(keys=[self._lock_key, self._runs_key], args=args))

    def close(self) -> None:
        self._pool.disconnect()
