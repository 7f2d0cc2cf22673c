"""Growing and shrinking a pool with the work waiting for it (``--autoscale=MAX,MIN``)."""

from __future__ import annotations

import logging
import time

from ..pool import Pool

log = logging.getLogger("kq.worker")


class Autoscaler:
    """Grows the pool while messages wait for a slot; shrinks it by one slot each ``keepalive``
    seconds that slots stay idle, never below ``minimum``. Checks at most once a second."""

    def __init__(self, pool: Pool, maximum: int, minimum: int, keepalive: float = 30.0) -> None:
        self.pool = pool
        self.maximum = maximum
        self.minimum = minimum
        self.keepalive = keepalive
        self._idle_since: float | None = None
        self._next_check = 0.0

    def tick(self, waiting: int, running: int) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + 1.0
        size = self.pool.concurrency
        if waiting and size < self.maximum:
            grow = min(waiting, self.maximum - size)
            self.pool.grow(grow)
            self._idle_since = None
            log.info("kq: autoscale: grew the pool by %d to %d", grow, self.pool.concurrency)
        elif running < size and size > self.minimum:
            if self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since >= self.keepalive:
                self.pool.shrink(1)
                self._idle_since = now
                if self.pool.concurrency < size:
                    log.info("kq: autoscale: shrank the pool to %d", self.pool.concurrency)
        else:
            self._idle_since = None
