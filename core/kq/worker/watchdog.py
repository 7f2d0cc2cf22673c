"""The watchdog: a worker whose consumer loop is stuck exits, so that its supervisor restarts it.

A stuck loop is the worst way for a worker to fail: the process is up, so nothing restarts
it, but it runs nothing, and what it had fetched stays leased to it (on RabbitMQ, for as long
as its connection lives). The loop begins a step at least every second or so
(:data:`~kq.worker.worker.POLL_INTERVAL`) and its longest legitimate waits are bounded by
timeouts (the broker's socket timeout or heartbeat, ``result_store_timeout``, the reconnection
backoff). So when :attr:`Worker.last_step <kq.worker.worker.Worker.last_step>` is older than
``worker_watchdog_timeout``, something blocked where no timeout applies (a plugin hook, a call
into a library that never returns, a lock): the watchdog logs the loop thread's stack, stops
the pool without waiting, and ends the process with :data:`EXIT_CODE`.

Time the loop spends inside a pool's ``submit`` is not counted: the solo pool runs the task
right there, and a long task is not a stuck loop (task time limits are for those). Nor is
start-up (before the worker is ready) or a warm shutdown (running tasks may take their time).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback

from .worker import Worker

log = logging.getLogger("kq.worker")

#: The exit code of a worker the watchdog ended (``EX_SOFTWARE``: an internal error).
EXIT_CODE = 70
#: Longest pause between two looks at the loop, in seconds.
CHECK_EVERY = 1.0
#: Seconds given to stopping the pool before the process exits anyway.
ABANDON_WITHIN = 5.0


class Watchdog:
    """Watches ``worker``'s loop, run by thread ``loop_thread``, from a daemon thread."""

    def __init__(self, worker: Worker, timeout: float, loop_thread: threading.Thread) -> None:
        self.worker = worker
        self.timeout = timeout
        self.loop_thread = loop_thread
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="kq-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        worker, every = self.worker, min(CHECK_EVERY, self.timeout / 4)
        excused_at = 0.0  # when a pause last did not count: start-up, shutdown, in ``submit``
        while not self._stop.wait(every):
            now = time.monotonic()
            if not worker.wait_ready(0) or worker.stopping or worker.in_submit:
                excused_at = now
                continue
            stalled = now - max(worker.last_step, excused_at)
            if stalled > self.timeout:
                self._bite(stalled)
                return

    def _bite(self, stalled: float) -> None:
        frame = sys._current_frames().get(self.loop_thread.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(not running)\n"
        log.critical(
            "kq: worker %s: the consumer loop has not stepped for %.0f s "
            "(worker_watchdog_timeout=%g); exiting with code %d so a supervisor restarts it "
            "(unacked tasks will be redelivered by the broker). The loop is stuck here:\n%s",
            self.worker.hostname,
            stalled,
            self.timeout,
            EXIT_CODE,
            stack.rstrip(),
        )
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        # Stopping the pool may block on what blocks the loop: it gets a few seconds, no more.
        abandon = threading.Thread(target=self.worker.abandon, name="kq-watchdog-abandon", daemon=True)
        abandon.start()
        abandon.join(ABANDON_WITHIN)
        os._exit(EXIT_CODE)


def start_watchdog(worker: Worker) -> Watchdog | None:
    """The watchdog of ``worker``, whose loop is to run in the calling thread; ``None`` when
    ``worker_watchdog_timeout`` is ``None``."""
    timeout = worker.app.conf.worker_watchdog_timeout
    if timeout is None:
        return None
    return Watchdog(worker, timeout, threading.current_thread()).start()
