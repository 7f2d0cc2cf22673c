"""Soft time limits for threads: one watchdog thread raises SoftTimeLimitExceeded in a late job.

Python cannot stop another thread, but it can ask the interpreter to raise an exception in it:
``PyThreadState_SetAsyncExc``. The exception arrives at the thread's next bytecode, so a
thread inside one long C call (``time.sleep(60)``, a socket read without a timeout, a large
regex) gets it only when that call returns. That is "where Python allows", and it is why this
pool has no hard limit: nothing can end a thread that never returns to Python.

One thread serves every job: deadlines wait in a heap, and the watchdog sleeps until the
earliest. Arming costs a lock and a heap push, and nothing at all for jobs without a limit.

The hazards are at the edges of a job. An alarm can fire the moment it is armed, so the
caller arms it inside the block that handles the exception. And one fired just as its job
ends must not reach the thread's next job: firing and disarming exclude each other under one
lock, an alarm fires at most once, and :meth:`Watchdog.disarm` clears a fired exception that
has not arrived yet. After ``disarm`` returns, nothing from that alarm can reach the thread.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import math
import threading
import time

from kq.exceptions import SoftTimeLimitExceeded

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int
#: Passed instead of an exception, it clears the thread's pending one.
_NOTHING = ctypes.py_object()

#: Disarmed alarms are left in the heap; it is rebuilt when more than this many (and more than
#: half of it) are dead, so a busy pool with long limits does not keep millions of them.
_COMPACT_AFTER = 64


class Alarm:
    """One job's soft limit, armed in the job's thread; or, with no deadline, only the means
    to stop the job on request (:meth:`Watchdog.track`, :meth:`Watchdog.fire`)."""

    __slots__ = ("deadline", "thread", "fired", "disarmed", "queued")

    def __init__(self, deadline: float, thread: int, queued: bool = True) -> None:
        self.deadline = deadline
        self.thread = thread
        self.fired = False
        self.disarmed = False
        self.queued = queued  # in the heap (a deadline to watch)


class Watchdog:
    """Raises :class:`SoftTimeLimitExceeded` in threads whose alarm is due.

    Its thread starts with the first alarm, so a pool whose tasks have no soft limit has none.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()  # breaks deadline ties; alarms do not compare
        self._dead = 0  # disarmed alarms still in the heap
        self._thread: threading.Thread | None = None
        self._stopped = False

    def arm(self, seconds: float) -> Alarm:
        """Arm an alarm for the calling thread, due in ``seconds``. It may go off before this
        call has returned: call it inside the block that handles the exception."""
        alarm = Alarm(time.monotonic() + seconds, threading.get_ident())
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
                self._thread.start()
            if self._dead > _COMPACT_AFTER and 2 * self._dead > len(self._heap):
                # Here, not in disarm: the arming thread has nothing pending that could
                # interrupt the rebuild halfway.
                self._heap = [entry for entry in self._heap if not entry[2].disarmed]
                heapq.heapify(self._heap)
                self._dead = 0
            heapq.heappush(self._heap, (alarm.deadline, next(self._order), alarm))
            if self._heap[0][2] is alarm:
                self._wake.notify()
        return alarm

    def track(self) -> Alarm:
        """An alarm for the calling thread with no deadline: it goes off only through
        :meth:`fire`, and is disarmed like any other. Costs no lock and no heap entry."""
        return Alarm(math.inf, threading.get_ident(), queued=False)

    def fire(self, alarm: Alarm, exc: type[BaseException]) -> bool:
        """Raise ``exc`` in the alarm's thread now, unless the alarm went off or was disarmed
        already; return whether it was raised. Excluded from :meth:`disarm` as the watchdog's
        own firing is, so it can never reach the thread's next job."""
        with self._lock:
            if alarm.fired or alarm.disarmed:
                return False
            alarm.fired = True
            _set_async_exc(alarm.thread, exc)
        return True

    def disarm(self, alarm: Alarm) -> None:
        """Call in the alarm's thread when its job ends; see the module docstring.

        The exception may still arrive inside this call, and then nowhere else. Only a plain
        lock and attribute writes happen under the lock, so an exception landing here cannot
        leave the lock held or the heap half-changed.
        """
        with self._lock:
            alarm.disarmed = True
            fired = alarm.fired
            if not fired and alarm.queued:
                self._dead += 1
        if fired:
            _set_async_exc(alarm.thread, _NOTHING)

    def stop(self) -> None:
        """Stop watching; alarms still armed never fire."""
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _watch(self) -> None:
        with self._wake:
            while not self._stopped:
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, _, alarm = self._heap[0]
                if alarm.disarmed:
                    heapq.heappop(self._heap)
                    self._dead -= 1
                    continue
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                alarm.fired = True
                _set_async_exc(alarm.thread, SoftTimeLimitExceeded)
