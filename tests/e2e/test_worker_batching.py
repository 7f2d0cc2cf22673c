"""How the worker's loop talks to the broker while it is busy: it tops up its prefetch window in
batches, once half of it is free, instead of one message per finished task (a round trip each),
and an ack that no fetch carries still goes out within ``ACK_DELAY``.

The worker runs on the real SQLite broker; its transport is wrapped only to record what the loop
asks of it (every call goes through to the broker).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kq import App
from kq.testing.contracts.pool import wait_until
from kq.testing.worker import worker_thread
from kq.transport import Delivery
from kq.worker.worker import ACK_DELAY


class RecordingTransport:
    """A real transport that also notes each fetch (limit asked, messages got) and each ack."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fetches: list[tuple[int, int]] = []
        self.acked: list[str] = []  # task ids, in the order their acks went out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _note_acks(self, acks: list[Delivery]) -> None:
        self.acked += [delivery.envelope.headers["id"] for delivery in acks]

    def ack(self, acks: list[Delivery]) -> None:
        self.inner.ack(acks)
        self._note_acks(list(acks))

    def ack_and_fetch(self, acks: list[Delivery], queues: Any, limit: int, timeout: float) -> list[Delivery]:
        got = self.inner.ack_and_fetch(acks, queues, limit, timeout)
        self._note_acks(list(acks))
        if got:
            self.fetches.append((limit, len(got)))
        return got


def recording(app: App) -> list[RecordingTransport]:
    made: list[RecordingTransport] = []
    new_transport = app.new_transport

    def wrapped() -> Any:
        made.append(RecordingTransport(new_transport()))
        return made[-1]

    app.new_transport = wrapped  # type: ignore[method-assign]
    return made


def test_a_busy_worker_tops_up_its_window_in_batches(kq_app: App) -> None:
    """One slot and a window of 5 (multiplier 4): each finished task frees one place, but the
    loop fetches only once 3 are free (or nothing waits for the slot), so no fetch asks for
    fewer than 3 messages; one fetch per finished task would ask for 1."""
    gate = threading.Semaphore(0)
    ran: list[int] = []

    @kq_app.task
    def held(n: int) -> None:
        assert gate.acquire(timeout=30)
        ran.append(n)

    kq_app.send_many([held.s(n) for n in range(30)])
    transports = recording(kq_app)
    with worker_thread(kq_app, pool="threads", concurrency=1, prefetch_multiplier=4):
        for n in range(30):
            gate.release()
            assert wait_until(lambda n=n: len(ran) > n), f"task {n} never ran"
    assert ran == list(range(30))
    fetches = [fetch for transport in transports for fetch in transport.fetches]
    assert sum(got for _, got in fetches) == 30
    assert min(limit for limit, _ in fetches) >= 3, fetches
    assert len(fetches) <= 30 // 3 + 1, fetches


def test_an_early_ack_no_fetch_carries_goes_out_while_its_task_runs(kq_app: App) -> None:
    """The window is full while the first task runs, so no turn fetches: its early ack goes
    out on its own once it has waited ACK_DELAY, not when a fetch next happens (here: never,
    until the task is let go)."""
    gate = threading.Event()

    @kq_app.task
    def held(n: int) -> int:
        assert gate.wait(30)
        return n

    results = [held.delay(n) for n in range(5)]
    transports = recording(kq_app)
    first = results[0].id
    try:
        with worker_thread(kq_app, pool="threads", concurrency=1, prefetch_multiplier=4):
            assert wait_until(lambda: any(first in t.acked for t in transports)), "never acked"
            time.sleep(10 * ACK_DELAY)
            acked = [task_id for t in transports for task_id in t.acked]  # each ack once
            assert acked == [first], "only the running task is acked"
            gate.set()
            assert [r.get(timeout=30) for r in results] == list(range(5))
    finally:
        gate.set()
