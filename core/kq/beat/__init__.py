"""Beat: periodic tasks. Schedules say when, entries say what, a store keeps the last runs and
the leader lock, and :class:`Beat` publishes while it leads. See docs/beat.md."""

from __future__ import annotations

from .entry import MISSED_POLICIES, Entry, build_entry, build_schedule
from .schedule import Schedule, every
from .service import Beat, EntryStatus, load_entries, open_store
from .store import ScheduleStore

__all__ = [
    "MISSED_POLICIES",
    "Beat",
    "Entry",
    "EntryStatus",
    "Schedule",
    "ScheduleStore",
    "build_entry",
    "build_schedule",
    "every",
    "load_entries",
    "open_store",
]
