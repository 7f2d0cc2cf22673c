"""Beat: periodic tasks. Schedules say when, entries say what, a store keeps the last runs and
the leader lock, and :class:`Beat` publishes while it leads. See docs/beat.md."""

from __future__ import annotations

from .crontab import crontab
from .entry import MISSED_POLICIES, Entry, build_entry, build_schedule
from .recurrence import rrule
from .schedule import Schedule, every
from .service import Beat, EntryStatus, load_entries, open_store
from .solar import solar
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
    "crontab",
    "every",
    "load_entries",
    "open_store",
    "rrule",
    "solar",
]
