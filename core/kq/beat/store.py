"""Where beat keeps its state: the last published slot of each entry, and the leader lock.

Stores come from plugins (``kq_schedule_stores``): kq-sqlite keeps them in the SQLite file,
kq-redis in Redis. Every store passes :class:`kq.testing.contracts.ScheduleStoreContract`.

Exactly one beat publishes at a time: the one holding the lock. The lock is a lease that the
leader renews well before it runs out; a leader that dies simply stops renewing, and another
beat acquires the lock once the lease has expired. Writes to the state are *fenced*: a store
only advances an entry while the writer still holds the lock, so a leader that was paused past
its lease (and replaced) cannot publish a slot its successor has already taken.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime


class ScheduleStore(ABC):
    """The interface a schedule store implements; built as ``factory(url, options)``.

    ``options`` always holds ``namespace`` (the app's name, so several apps can share one store)
    plus whatever the user put in ``beat_store_options``. Times are aware UTC datetimes; a store
    must give back exactly the datetime it was given (store ``isoformat()``, not a float).
    """

    @abstractmethod
    def acquire(self, holder: str, lease: float) -> bool:
        """Take the leader lock for ``lease`` seconds, or extend it when ``holder`` already holds
        it. Return ``True`` when ``holder`` holds the lock afterwards, ``False`` when another
        holder's lease has not expired. Atomic across processes and machines."""

    @abstractmethod
    def release(self, holder: str) -> None:
        """Give the lock up if ``holder`` holds it (a clean shutdown hands over at once)."""

    @abstractmethod
    def leader(self) -> str | None:
        """The holder whose lease is running now, or ``None``."""

    @abstractmethod
    def last_runs(self) -> Mapping[str, datetime]:
        """The last slot recorded for each entry name."""

    @abstractmethod
    def advance(self, holder: str, entry: str, expected: datetime | None, slot: datetime) -> bool:
        """Record ``slot`` as ``entry``'s last slot, atomically, and only if ``holder`` holds the
        lock and the entry's recorded slot is still ``expected`` (``None``: no record yet).
        Return whether it was recorded. Beat publishes a slot only after this returned True."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Called once when beat stops."""
