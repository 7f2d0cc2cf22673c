"""The beat loop: hold the store's leader lock, and while holding it publish each entry's due
slots, recording each slot in the store before its message goes out.

Several beats may run against one store; the one holding the lock publishes, the others retry
the lock every ``lease / 10`` seconds (at most 0.5 s), so when the leader dies another one
publishes within about ``lease`` seconds. Because a slot is recorded (fenced by the lock) before
it is published, a slot is never published twice; a leader killed between the two loses that
one slot, which the log of the next leader does not show - the price of never duplicating.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs

from ..config import DEFAULT_URL
from ..exceptions import ConfigurationError
from ..plugins import url_scheme
from ..protocol import utcnow
from .entry import Entry, build_entry, plan
from .store import ScheduleStore

if TYPE_CHECKING:
    from ..specs import ScheduleStoreSpec

log = logging.getLogger("kq.beat")

#: Headers on every message beat publishes, so a task can tell which entry and slot it serves.
ENTRY_HEADER = "kq_beat_entry"
SLOT_HEADER = "kq_beat_slot"


def load_entries(app: Any) -> list[Entry]:
    """The app's entries: the ``beat_schedule`` setting plus ``@app.periodic`` tasks."""
    conf = app.conf
    registry = app.plugins.schedule_types

    def factory_for(name: str) -> Any:
        return registry.get(name).factory

    specs = dict(conf.beat_schedule)
    for name, spec in app.periodic_entries.items():
        if name in specs:
            raise ConfigurationError(
                f"beat entry {name!r} is both in beat_schedule and an @app.periodic task; rename one"
            )
        specs[name] = spec
    tz: tzinfo = ZoneInfo(conf.timezone)
    entries = []
    for name, spec in specs.items():
        entry = build_entry(name, spec, factory_for)
        entries.append(attrs.evolve(entry, schedule=entry.schedule.with_default_timezone(tz)))
    return entries


def open_store(app: Any, url: str | None = None) -> ScheduleStore:
    """The schedule store named by ``url``, else the ``beat_store`` setting, else the broker's
    (when a plugin provides a store for the broker's scheme), else the SQLite default file."""
    conf = app.conf
    url = url or conf.beat_store
    if url is None:
        url = conf.broker_url
        if url_scheme(url) not in app.plugins.schedule_stores:
            url = DEFAULT_URL
            log.info(
                "kq beat: no schedule store for the broker's scheme; keeping beat state in "
                "%s (set beat_store to share it between machines)",
                url,
            )
    spec: ScheduleStoreSpec = app.plugins.schedule_stores.get(url_scheme(url))
    return spec.factory(url, {"namespace": app.main, **conf.beat_store_options})


@attrs.frozen
class EntryStatus:
    """An entry as ``kq beat --list`` shows it."""

    entry: Entry
    last: datetime | None
    next: datetime | None


class Beat:
    """Publishes the app's periodic tasks while it leads; see the module docstring."""

    def __init__(
        self,
        app: Any,
        *,
        store: ScheduleStore | None = None,
        lease: float | None = None,
        holder: str | None = None,
    ) -> None:
        conf = app.conf
        self.app = app
        self.entries = load_entries(app)
        self.lease = lease or conf.beat_lease
        self.missed = conf.beat_missed
        self.max_catchup = conf.beat_max_catchup
        self.store = store or open_store(app)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: ``None`` until the first tick has tried the lock.
        self.leading: bool | None = None
        #: When this beat last became the leader: slots due before then were missed.
        self.leading_since: datetime | None = None
        self._stopped = threading.Event()
        self._store_down = False

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        """Tick until :meth:`stop`; then hand the lock over and close the store."""
        names = ", ".join(e.name for e in self.entries) or "none"
        log.info("kq beat %s: %d entries (%s), lease %gs", self.holder, len(self.entries), names, self.lease)
        try:
            while not self._stopped.is_set():
                self._stopped.wait(self.tick())
        finally:
            if self.leading:
                self.leading = False
                try:
                    self.store.release(self.holder)
                except Exception:  # the lease runs out by itself
                    log.warning("kq beat: could not release the lock; it expires in %gs", self.lease)
            self.store.close()

    def stop(self) -> None:
        self._stopped.set()

    def tick(self) -> float:
        """Renew or try the lock, publish what is due when leading; return seconds to sleep."""
        follow = min(0.5, self.lease / 10)
        started = time.monotonic()
        try:
            leading = bool(self.store.acquire(self.holder, self.lease))
            if self._store_down:
                log.info("kq beat: schedule store reachable again")
                self._store_down = False
            if leading != self.leading:
                self._now_leading(leading)
            if not leading:
                return follow
            return min(self._publish_due(deadline=started + self.lease / 2), self.lease / 3)
        except Exception as exc:
            if not self._store_down:
                log.error("kq beat: schedule store unavailable (%s: %s); retrying", type(exc).__name__, exc)
            self._store_down, self.leading = True, False
            return follow

    def _now_leading(self, leading: bool) -> None:
        self.leading = leading
        if leading:
            self.leading_since = utcnow()
            log.info("kq beat %s: leading since %s", self.holder, self.leading_since.isoformat())
        else:
            log.info("kq beat %s: following: %s leads", self.holder, self.store.leader() or "another beat")

    def _publish_due(self, deadline: float) -> float:
        last_runs = self.store.last_runs()
        now = utcnow()
        wait = self.lease / 3
        for entry in self.entries:
            last = last_runs.get(entry.name)
            if last is None:  # a new entry: its first slot is the first one after now
                last = now if self.store.advance(self.holder, entry.name, None, now) else None
            elif time.monotonic() < deadline:
                last = self._carry_out(entry, last, now)
            if last is None:
                return 0.0  # the lock was lost under us; the next tick sorts out who leads
            upcoming = entry.schedule.next_after(last)
            if upcoming is not None:
                wait = min(wait, (upcoming - utcnow()).total_seconds() + 0.002)
        return max(wait, 0.0)

    def _carry_out(self, entry: Entry, last: datetime, now: datetime) -> datetime | None:
        """Publish ``entry``'s due slots; return its recorded slot afterwards (``None``: lock lost)."""
        assert self.leading_since is not None
        todo = plan(
            entry.schedule, last, now, entry.missed or self.missed, self.max_catchup, self.leading_since
        )
        if todo.advance_to is None:
            return last
        if todo.skipped or todo.truncated:
            log.warning(
                "kq beat: %s: %s%d missed run(s) not sent (missed=%s)",
                entry.name,
                "at least " if todo.truncated else "",
                todo.skipped,
                entry.missed or self.missed,
            )
        cursor = last
        for i, slot in enumerate(todo.publish):
            target = todo.advance_to if i == len(todo.publish) - 1 else slot
            if not self.store.advance(self.holder, entry.name, cursor, target):
                return None
            if not self._publish(entry, slot):
                # Put the slot back so the next tick sends it again.
                self.store.advance(self.holder, entry.name, target, cursor)
                return cursor
            cursor = target
        if cursor != todo.advance_to:
            if not self.store.advance(self.holder, entry.name, cursor, todo.advance_to):
                return None
            cursor = todo.advance_to
        return cursor

    def _publish(self, entry: Entry, slot: datetime) -> bool:
        options: dict[str, Any] = dict(entry.options)
        headers = {
            **(options.pop("headers", None) or {}),
            ENTRY_HEADER: entry.name,
            SLOT_HEADER: slot.isoformat(),
        }
        task = self.app.tasks.get(entry.task)
        send = task.apply_async if task is not None else self._send_by_name(entry.task)
        try:
            result = send(entry.args, entry.kwargs, task_id=entry.task_id(slot), headers=headers, **options)
        except Exception as exc:
            log.error(
                "kq beat: could not send %s for %s (slot %s): %s: %s; will retry",
                entry.task,
                entry.name,
                slot.isoformat(),
                type(exc).__name__,
                exc,
            )
            return False
        log.info("kq beat: sent %s[%s] for %s (slot %s)", entry.task, result.id, entry.name, slot.isoformat())
        return True

    def _send_by_name(self, name: str) -> Any:
        return lambda args, kwargs, **options: self.app.send_task(name, args, kwargs, **options)

    # -- inspecting -----------------------------------------------------------------------

    def status(self, now: datetime | None = None) -> list[EntryStatus]:
        """Each entry with its last recorded slot and its next run."""
        now = now or utcnow()
        last_runs: Mapping[str, datetime] = self.store.last_runs()
        found = []
        for entry in self.entries:
            last = last_runs.get(entry.name)
            upcoming = entry.schedule.next_after(max(last, now) if last else now)
            if last is not None:
                pending = entry.schedule.next_after(last)
                if pending is not None and pending <= now:
                    upcoming = pending  # overdue: the next tick of a leading beat sends it
            found.append(EntryStatus(entry, last, upcoming))
        return found
