"""A base for result backends on stores that keep values by key and little else.

Object stores (S3, Azure Blob, GCS), a shared directory, memcached or a DynamoDB table can each
put, read and delete a value under a key; most cannot expire it on time, read many keys in one
request, or tell the kernel a result's state without reading it. :class:`KeyValueBackend` does
that part once, so each such plugin writes only the calls its store's client makes:

- :meth:`~KeyValueBackend.put_record`, :meth:`~KeyValueBackend.get_record`,
  :meth:`~KeyValueBackend.delete_record`: one key each;
- :meth:`~KeyValueBackend.scan_records` (optional): every key with its expiry, for
  :meth:`~KeyValueBackend.cleanup` on stores without native expiry.

A :class:`Record` carries the state and the expiry beside the payload. A store with per-object
metadata (S3, Azure, GCS, DynamoDB attributes) keeps them there and the payload as it is, so the
object is the Celery result meta a person can read; a store of plain bytes keeps
:meth:`Record.pack`'s framing. Reads honour the expiry whatever the store does with it, so an
expired result reads as missing on time even where the store deletes it late or never.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import attrs

from .backend import ResultBackend, StoredResult

#: Where each result lives, as Celery's key-value backends name it.
RESULT_PREFIX = "celery-task-meta-"
#: The framing of :meth:`Record.pack`: a version tag, then state and expiry on one line each.
_MAGIC = b"kq-record-1\n"


#: What :meth:`Record.metadata` calls the state and the expiry: plain lower-case names that Azure
#: (identifiers), GCS and S3 user metadata all accept.
META_NAMES = ("state", "expires_at")


def metadata_expiry(metadata: Mapping[str, str] | None, names: tuple[str, str] = META_NAMES) -> float | None:
    """The expiry :meth:`Record.metadata` wrote into ``metadata``; ``None`` when there is none (or
    it is not a number), so a listing can find expired objects without reading their bodies."""
    value = (metadata or {}).get(names[1])
    try:
        return float(value) if value else None
    except ValueError:
        return None


@attrs.frozen
class Record:
    """One result as a key-value store keeps it."""

    state: str
    payload: bytes
    #: Wall-clock time (``time.time()``) after which the result reads as missing; ``None`` keeps it.
    expires_at: float | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at

    def metadata(self, names: tuple[str, str] = META_NAMES) -> dict[str, str]:
        """The state and expiry as object metadata (``names``: what the store calls them), for
        stores that keep the payload as the object's body."""
        state, expires = names
        found = {state: self.state}
        if self.expires_at is not None:
            found[expires] = repr(self.expires_at)
        return found

    @classmethod
    def from_metadata(
        cls, payload: bytes, metadata: Mapping[str, str] | None, names: tuple[str, str] = META_NAMES
    ) -> Record | None:
        """The record :meth:`metadata` described, or ``None`` for an object without kq's state
        (one some other program wrote under the key reads as missing)."""
        state = (metadata or {}).get(names[0])
        if not state:
            return None
        return cls(state, payload, metadata_expiry(metadata, names))

    def pack(self) -> bytes:
        """The record as one value, for stores that keep nothing but bytes."""
        expiry = b"" if self.expires_at is None else repr(self.expires_at).encode()
        return b"".join((_MAGIC, self.state.encode("ascii"), b"\n", expiry, b"\n", self.payload))

    @classmethod
    def unpack(cls, value: bytes) -> Record | None:
        """The record :meth:`pack` made, or ``None`` for a value it did not make (a result some
        other program left under the key reads as missing, not as a crash)."""
        if not value.startswith(_MAGIC):
            return None
        state, expiry, payload = value[len(_MAGIC) :].split(b"\n", 2)
        try:
            return cls(state.decode("ascii"), payload, float(expiry) if expiry else None)
        except ValueError:
            return None


class KeyValueBackend(ResultBackend):
    """A :class:`~kq.backend.ResultBackend` made of per-key reads and writes. Subclasses set
    ``capabilities`` and implement the three record methods; counters and claims, where the
    store can do them atomically, are the subclass's own (:meth:`incr`, :meth:`claim`...)."""

    #: Threads :meth:`get_many` reads with when the store answers one key per request (a chord of
    #: 1,000 reads 1,000 keys); 1 reads them one after another.
    read_concurrency: ClassVar[int] = 16
    #: Threads :meth:`store_many` writes with (a group's results, a revoke list); 1 writes them
    #: one after another. Of several results for one id in a batch only the last is written.
    write_concurrency: ClassVar[int] = 1

    def key(self, task_id: str) -> str:
        """The store key of a task's result; ``key_prefix`` (an option) goes in front."""
        return f"{self.options.get('key_prefix', '')}{RESULT_PREFIX}{task_id}"

    @abc.abstractmethod
    def put_record(self, key: str, record: Record) -> None:
        """Write ``record`` under ``key``, replacing what is there."""

    @abc.abstractmethod
    def get_record(self, key: str) -> Record | None:
        """Read the record under ``key``; ``None`` when there is none. Need not check expiry."""

    @abc.abstractmethod
    def delete_record(self, key: str) -> None:
        """Delete ``key``; a missing key is not an error."""

    def scan_records(self) -> Iterable[tuple[str, float | None]]:
        """Every result key this backend wrote, with its expiry, for :meth:`cleanup`. Stores with
        native expiry keep the default, which finds nothing."""
        return ()

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        expires_at = None if ttl is None else time.time() + ttl
        records = {self.key(r.task_id): Record(r.state, r.payload, expires_at) for r in results}
        if self.write_concurrency <= 1 or len(records) < 2:
            for key, record in records.items():
                self.put_record(key, record)
            return
        with ThreadPoolExecutor(min(self.write_concurrency, len(records))) as threads:
            for _ in threads.map(self.put_record, records, records.values()):
                pass  # re-raises the first failure

    def get(self, task_id: str) -> StoredResult | None:
        return self._stored(task_id, self.get_record(self.key(task_id)))

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        if self.read_concurrency <= 1 or len(task_ids) < 2:
            return [self.get(task_id) for task_id in task_ids]
        with ThreadPoolExecutor(min(self.read_concurrency, len(task_ids))) as threads:
            return list(threads.map(self.get, task_ids))

    def forget(self, task_id: str) -> None:
        self.delete_record(self.key(task_id))

    def cleanup(self) -> int:
        now, removed = time.time(), 0
        for key, expires_at in list(self.scan_records()):
            if expires_at is not None and expires_at <= now:
                self.delete_record(key)
                removed += 1
        return removed

    @staticmethod
    def _stored(task_id: str, record: Record | None) -> StoredResult | None:
        if record is None or record.expired():
            return None
        return StoredResult(task_id, record.state, record.payload)
