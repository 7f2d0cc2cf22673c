"""Time limits for greenlets that compute without yielding.

A :class:`gevent.Timeout` is raised by the hub, and the hub only runs when the current greenlet
yields. A task computing in a loop never does: it would run past its hard limit, and starve
every other task and the worker's own loop (no fetches, no acks) until it ends on its own.

So while jobs with limits run, the watchdog keeps the process's CPU-time interval timer
(``ITIMER_VIRTUAL``) ticking. Its signal, ``SIGVTALRM``, is handled by Python in the main thread
between two bytecodes, that is inside whichever greenlet is computing; if that greenlet is a
job past one of its limits, the handler raises the limit there, as the hub would have. A CPU
timer, not a wall-clock one, because it costs nothing while the process waits (the usual
state of a green worker) and leaves ``SIGALRM`` to the application (and to pytest-timeout).

What it cannot reach: a single long call into C (the handler runs when it returns), and task
code that catches ``BaseException``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from gevent import Timeout, getcurrent

if TYPE_CHECKING:
    from greenlet import greenlet

log = logging.getLogger("kq.pool.gevent")

#: CPU seconds between checks: how far past its limit a computing greenlet may run.
TICK = 0.1


class Watchdog:
    """Raises overdue :class:`gevent.Timeout` limits inside greenlets that do not yield.

    Signals are per process, so one instance serves every pool: :data:`WATCHDOG`.
    """

    def __init__(self, tick: float = TICK) -> None:
        self.tick = tick
        #: greenlet -> (deadline on the monotonic clock, the Timeout to raise then).
        self._limits: dict[greenlet, list[tuple[float, Timeout]]] = {}
        self._usable: bool | None = None  # unknown until first needed

    @contextmanager
    def watching(self, *timeouts: Timeout) -> Iterator[None]:
        """Watch the current greenlet's ``timeouts`` (those with seconds) while in the block."""
        now = time.monotonic()
        limits = [(now + t.seconds, t) for t in timeouts if t.seconds is not None]
        if not limits or not self._install():
            yield
            return
        current = getcurrent()
        self._limits[current] = limits
        if len(self._limits) == 1:
            signal.setitimer(signal.ITIMER_VIRTUAL, self.tick, self.tick)
        try:
            yield
        finally:
            self._limits.pop(current, None)
            if not self._limits:
                signal.setitimer(signal.ITIMER_VIRTUAL, 0)

    def _install(self) -> bool:
        """Take SIGVTALRM unless something else (a profiler) already handles it."""
        if self._usable is None:
            current = signal.getsignal(signal.SIGVTALRM)
            self._usable = current in (signal.SIG_DFL, signal.SIG_IGN, None)
            if self._usable:
                signal.signal(signal.SIGVTALRM, self._check)
            else:
                log.warning(
                    "kq: SIGVTALRM is handled by %r: time limits of the gevent pool "
                    "stop a task only when it yields, not while it computes",
                    current,
                )
        return self._usable

    def _check(self, signum: int, frame: FrameType | None) -> None:
        limits = self._limits.get(getcurrent())
        if not limits:
            return
        now = time.monotonic()
        for deadline, timeout in limits:
            if deadline <= now and timeout.pending:
                timeout.close()  # raised here, so the hub must not raise it a second time
                raise timeout if timeout.exception is None else timeout.exception


WATCHDOG = Watchdog()
