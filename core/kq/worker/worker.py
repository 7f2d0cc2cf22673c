"""The worker's control flow: consume, decode, dispatch to the pool, ack.

One thread (the one calling :meth:`Worker.run`) owns the consumer's transport and does all
broker I/O: it fetches in batches, keeps at most ``concurrency * (1 + prefetch_multiplier)``
messages reserved, hands jobs to the pool only when a slot is free, and acks in batches (as a
task starts by default, after it ends with ``acks_late``) in the same round trip that tops up
the prefetch window, which it does once half of the window is free rather than per finished
job. Pools report finished jobs through a queue that the same thread drains,
so no transport is shared between threads.

Messages that cannot run (undecodable, untrusted content type or signature, over a size
limit, unknown task, malformed) are rejected without requeue (dead-lettered where the transport
can), logged once, counted, and the worker goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import queue as queue_module
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial

import attrs

from ..app import App
from ..config import Settings, safe_url
from ..events import EventDispatcher
from ..exceptions import BrokerUnavailable, ConfigurationError, MessageRejected
from ..execution import Runner
from ..pool import Job, Outcome, Pool, PoolContext
from ..protocol import TaskMessage, decode_task
from ..ratelimit import worker_throttle
from ..revoke import Revocations, Revoke
from ..states import FAILURE, REVOKED, SUCCESS
from ..transport import Delivery, Transport
from .autoscale import Autoscaler
from .control import ControlHandlers
from .metrics import RECEIVED, REJECTED, STARTED, TaskMetrics

log = logging.getLogger("kq.worker")

#: Longest the consumer blocks in one fetch or wait, so shutdown requests are seen quickly.
POLL_INTERVAL = 1.0
#: Reconnection backoff: first delay, doubling up to the maximum (seconds).
RECONNECT_FIRST, RECONNECT_MAX = 0.25, 10.0
#: Longest an ack waits for a turn that fetches before it goes out on its own (seconds).
ACK_DELAY = 0.01


@attrs.define
class WorkerStats:
    """Counters since start, readable from any thread."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    revoked: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = attrs.field(factory=dict)


def default_hostname() -> str:
    return f"kq@{socket.gethostname()}"


class Worker:
    """Consumes ``queues`` of ``app`` and runs the tasks in a pool named ``pool``."""

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        pool: str | None = None,
        concurrency: int | None = None,
        prefetch_multiplier: int | None = None,
        hostname: str | None = None,
        app_spec: str | None = None,
    ) -> None:
        conf = app.conf
        self.app = app
        self.queues = list(queues or [conf.task_default_queue])
        self.pool_name = pool or conf.worker_pool
        self.pool_spec = app.plugins.pools.get(self.pool_name)
        # Leased deliveries (SQLite, Redis) stay valid across connections; channel-bound ones
        # (AMQP) die with theirs and the broker redelivers them.
        self._leases_survive = app.plugins.transport_for(conf.broker_url).capabilities.visibility_timeout
        self.concurrency = (
            concurrency
            or conf.worker_concurrency
            or self.pool_spec.default_concurrency
            or os.cpu_count()
            or 1
        )
        multiplier = conf.worker_prefetch_multiplier
        self.prefetch_multiplier = multiplier if prefetch_multiplier is None else prefetch_multiplier
        self.hostname = hostname or default_hostname()
        self.app_spec = app_spec
        self._check_pool_supports(conf)
        self.max_concurrency = self.concurrency
        if conf.worker_autoscale is not None:
            self.max_concurrency, self.concurrency = conf.worker_autoscale
        self.autoscaler: Autoscaler | None = None
        self._unenforced: set[str] = set()  # limits this pool cannot enforce, warned once
        self.stats = WorkerStats()
        self.task_metrics = TaskMetrics()
        #: Task and worker events (``kq worker -E``); ``None`` when off.
        self.events = (
            EventDispatcher(app, self.hostname, buffered=True) if conf.worker_send_task_events else None
        )
        self.last_step = 0.0  # monotonic time the loop last began a step: liveness
        #: The loop is inside a pool's ``submit``, where a pool may run the job itself (solo):
        #: a long task there is not a stuck loop (see :mod:`.watchdog`).
        self.in_submit = False
        self.pool: Pool | None = None
        self.transport: Transport | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._done: queue_module.SimpleQueue[tuple[Job, Outcome]] = queue_module.SimpleQueue()
        self._tickets = itertools.count(1)
        self._reserved: deque[Job] = deque()
        self._held: list[tuple[float, int, Job]] = []  # (due monotonic, ticket, job), ETA not native
        self._deliveries: dict[int, Delivery] = {}
        self._generation: dict[int, int] = {}  # ticket -> connection generation it came from
        self._connection = 0  # generation of the current connection
        self._outage_since: float | None = None
        self._reconnects = 0
        self._running: dict[int, bool] = {}  # ticket -> acks_late
        self._active: dict[int, tuple[Job, float]] = {}  # ticket -> (job, wall time it started)
        self._to_ack: list[Delivery] = []
        self._ack_due: float | None = None  # monotonic time by which the oldest of _to_ack goes
        self._reject_hook = app.plugins.notifier("kq_message_rejected")
        self._throttle = worker_throttle(app)  # holds rate-limited jobs; None when no task has one
        self._runner: Runner | None = None
        self._revocations: Revocations | None = None
        self._revoked: dict[str, float] = {}  # the revocations' ids: looked up before each start
        # Changes other threads ask for (revokes, remote control), applied by the loop's thread.
        self._inbox: queue_module.SimpleQueue[Callable[[], None]] = queue_module.SimpleQueue()

    def __repr__(self) -> str:
        return f"<kq.Worker {self.hostname} pool={self.pool_name} c={self.concurrency}>"

    def _check_pool_supports(self, conf: Settings) -> None:
        """Settings the chosen pool cannot honour fail at start, naming pools that can."""
        caps = self.pool_spec.capabilities
        for setting, capability in (
            ("worker_max_tasks_per_child", "max_tasks_per_child"),
            ("worker_max_memory_per_child", "max_tasks_per_child"),
            ("worker_autoscale", "autoscale"),
        ):
            if getattr(conf, setting) is not None and not getattr(caps, capability):
                able = [
                    name
                    for name, p in self.app.plugins.pools.items()
                    if getattr(p.spec.capabilities, capability)
                ]
                raise ConfigurationError(
                    f"{setting}: the {self.pool_name} pool cannot do this; pools that can: "
                    f"{', '.join(able) or 'none installed (try kq-prefork)'}"
                )

    # -- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a warm shutdown: stop consuming, finish running tasks, return the rest."""
        self._stopping.set()

    def abandon(self) -> None:
        """For a cold shutdown from a signal handler, just before the process exits: stop the
        pool without waiting (process pools end their busy children, which would otherwise run
        on orphaned), and close the consumer's connection so the broker takes back unacked
        messages now (SQLite and Redis would otherwise wait for the visibility timeout). Best
        effort: the handler may have interrupted either mid-call."""
        if self.pool is not None:
            try:
                self.pool.shutdown(wait=False)
            except Exception as exc:
                log.warning("kq: could not stop the pool on cold shutdown: %s", exc)
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception as exc:
                log.warning("kq: could not close the broker connection on cold shutdown: %s", exc)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def reserved_count(self) -> int:
        """Messages fetched and waiting for a pool slot (ETA not yet due, rate limited included)."""
        return len(self._reserved) + len(self._held) + len(self._throttle or ())

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def broker_down_since(self) -> float | None:
        """Monotonic time the broker connection was lost, ``None`` while it is up."""
        return self._outage_since

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the worker is consuming (for tests and embedding)."""
        return self._ready.wait(timeout)

    def run(self) -> None:
        """Consume until :meth:`stop`; then shut down warmly and return."""
        self.app.check()
        runner = self._runner = Runner(self.app, self.hostname)
        conf = self.app.conf
        context = PoolContext(
            concurrency=self.concurrency,
            runner=runner,
            app_spec=self.app_spec,
            options=conf.worker_pool_options,
            lost=runner.lost,
            hostname=self.hostname,
            max_tasks_per_child=conf.worker_max_tasks_per_child,
            max_memory_per_child=conf.worker_max_memory_per_child,
        )
        self.pool = self.pool_spec.factory(context)
        if conf.worker_autoscale is None:
            self.concurrency = self.max_concurrency = self.pool.concurrency  # solo runs 1
        else:
            self.autoscaler = Autoscaler(self.pool, self.max_concurrency, self.concurrency)
        self.pool.start()
        self._revocations = Revocations(
            self.app, lambda revoke: self._inbox.put(partial(self._apply_revoke, revoke))
        )
        self._revoked = self._revocations.ids
        self._revocations.start(also=ControlHandlers(self).handlers)
        # Logged once listening: a client that sees it can send commands at once.
        log.info(
            "kq: worker %s ready: broker %s, backend %s, pool %s x%d, queues %s, tasks %d",
            self.hostname,
            safe_url(conf.broker_url),
            safe_url(conf.result_backend),
            self.pool_name,
            self.concurrency,
            ",".join(self.queues),
            len(self.app.tasks),
        )
        self.app.plugins.notify("kq_worker_start", worker=self)
        if self.events is not None:
            self.events.worker("worker-online")
        self._ready.set()
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                except BrokerUnavailable as exc:
                    self._connection_lost(exc)
        finally:
            self._shutdown()

    # -- the loop -------------------------------------------------------------------------

    def _capacity(self) -> int:
        """How many more messages may be fetched now."""
        limit = self.max_concurrency * (1 + self.prefetch_multiplier)
        return limit - len(self._reserved) - len(self._running) - len(self._throttle or ())

    def _step(self) -> None:
        """One turn: start what the pool has room for, then one broker round trip that acks
        (the early acks of what just started, the late acks of what finished) and tops up the
        prefetch window, blocking only when there is nothing else to do."""
        self.last_step = time.monotonic()
        if self.events is not None:
            self.events.tick(self._event_counts)
        self._broker()
        if not self._inbox.empty():
            self._drain_inbox()
        self._collect_done(block=False)
        self._release_due()
        if self.autoscaler is not None:
            assert self.pool is not None  # made by run() before the loop
            self.autoscaler.tick(len(self._reserved), len(self._running))
            self.concurrency = self.pool.concurrency
        started = self._dispatch()
        wait = self._next_due_in()
        want = self._capacity()
        fetch = want > 0 and self._top_up_now(want)
        acks = self._acks_due(fetch)
        try:
            if not fetch:
                if acks:
                    self._broker().ack(acks)
                self._broker().keep_alive()  # no fetch to carry the heartbeats this turn
            else:
                # With work reserved or just started, top up without blocking.
                timeout = 0.0 if self._reserved or started else wait
                deliveries = self._broker().ack_and_fetch(acks, self.queues, want, timeout)
                if self._outage_since is not None:
                    log.warning(
                        "kq: broker connection restored after %.1f s", time.monotonic() - self._outage_since
                    )
                    self._outage_since, self._reconnects = None, 0
                if deliveries:
                    self._receive(deliveries)
                    return
                if not self._reserved:
                    return
        except BrokerUnavailable:
            self._to_ack = acks + self._to_ack  # sent again through the next connection
            raise
        if not started:
            if self._ack_due is not None:
                wait = min(wait, max(0.0, self._ack_due - time.monotonic()))
            self._collect_done(block=True, timeout=wait)

    def _top_up_now(self, want: int) -> bool:
        """Whether this turn fetches. The window is topped up in batches, once half of it is
        free, rather than by one message per finished job, which costs a round trip each; but
        at once when fewer jobs wait than there are slots, so that no slot runs dry."""
        if len(self._reserved) < self.concurrency:
            return True
        return 2 * want >= self.max_concurrency * (1 + self.prefetch_multiplier)

    def _acks_due(self, fetching: bool) -> list[Delivery]:
        """The acks to send this turn: all of them when the turn fetches anyway, else only
        once the oldest has waited :data:`ACK_DELAY`, so that turns that need no fetch do not
        each make a round trip for an ack or two."""
        if not self._to_ack:
            self._ack_due = None
            return []
        now = time.monotonic()
        if self._ack_due is None:
            self._ack_due = now + ACK_DELAY
        if not fetching and now < self._ack_due:
            return []
        acks, self._to_ack, self._ack_due = self._to_ack, [], None
        return acks

    def _next_due_in(self) -> float:
        due = self._held[0][0] if self._held else math.inf
        if self._throttle is not None:
            assert self.pool is not None  # made by run() before the loop
            due = min(due, self._throttle.next_due(self.pool.free_slots() > 0))
        return max(0.0, min(POLL_INTERVAL, due - time.monotonic()))

    def _receive(self, deliveries: list[Delivery]) -> None:
        now = time.monotonic()
        app = self.app
        codec, serializers, accept = app.codec, app.serializers, app.accept
        max_depth = codec.limits.max_depth
        for delivery in deliveries:
            self.stats.received += 1
            try:
                envelope = codec.open(delivery.envelope)
                message = decode_task(envelope, serializers, accept, max_depth)
                if message.task not in self.app.tasks:
                    raise MessageRejected("unknown-task", f"task {message.task!r} is not registered here")
            except MessageRejected as exc:
                self._reject(delivery, exc)
                continue
            self.task_metrics.count(message.task, RECEIVED)
            if self.events is not None:
                self.events.task_received(message)
            ticket = next(self._tickets)
            job = self._job(message, delivery, ticket)
            self._deliveries[ticket] = delivery
            self._generation[ticket] = self._connection
            if self._revoked and message.id in self._revoked:
                self._skip_revoked(job)
                continue
            delay = message.seconds_until_eta()
            if delay > 0:
                heapq.heappush(self._held, (now + delay, ticket, job))
            else:
                self._reserve(job)

    def _job(self, message: TaskMessage, delivery: Delivery, ticket: int) -> Job:
        """The job for a message, with its effective time limits."""
        task = self.app.tasks[message.task]
        hard, soft = message.timelimit
        hard = task.time_limit if hard is None else hard
        soft = task.soft_time_limit if soft is None else soft
        caps = self.pool_spec.capabilities
        for name, value, able in (
            ("time_limit", hard, caps.hard_time_limit),
            ("soft_time_limit", soft, caps.soft_time_limit),
        ):
            if value is not None and not able and name not in self._unenforced:
                self._unenforced.add(name)
                log.warning(
                    "kq: the %s pool cannot enforce %s (task %s asks for %s s); tasks run without it",
                    self.pool_name,
                    name,
                    message.task,
                    value,
                )
        return Job(message, delivery.queue, delivery.redelivered, ticket, hard, soft)

    def _reject(self, delivery: Delivery, exc: MessageRejected) -> None:
        headers = delivery.envelope.headers
        task_id = headers.get("id") if hasattr(headers, "get") else None
        log.error("kq: rejected message %s from queue %s: %s", task_id or "(no id)", delivery.queue, exc)
        self.stats.rejected += 1
        task = headers.get("task") if hasattr(headers, "get") else None
        self.task_metrics.count(task if isinstance(task, str) else "(unknown)", REJECTED)
        if self.events is not None:
            self.events.task_rejected(task_id)
        counts = self.stats.rejected_by_reason
        counts[exc.reason] = counts.get(exc.reason, 0) + 1
        try:
            self._broker().reject(delivery, requeue=False, reason=str(exc))
        except Exception:
            log.exception("kq: could not reject message %s", task_id)
        if self._reject_hook:
            self._reject_hook(delivery=delivery, reason=exc.reason, detail=exc.detail)

    def _release_due(self) -> None:
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            self._reserve(heapq.heappop(self._held)[2])

    def _reserve(self, job: Job) -> None:
        """Queue a job to start, unless its task is rate limited: the throttle holds those."""
        if self._throttle is None or not self._throttle.hold(job):
            self._reserved.append(job)

    def _dispatch(self) -> int:
        """Hand reserved jobs to the pool while it has free slots; return how many started.

        An early-acked job (the default) starts at once and its ack goes out in this step's
        round trip, which the worker makes right after, while the job runs: a worker that
        dies in between leaves the message to be delivered again (at least once), as
        Celery's prefork pool does between a child accepting a job and the parent's ack.
        """
        pool, tasks, started = self.pool, self.app.tasks, 0
        assert pool is not None  # made by run() before the loop
        if self._throttle is not None:  # rate-limited jobs whose turn has come go first
            self._reserved.extendleft(reversed(self._throttle.release(pool.free_slots())))
        while self._reserved and (free := pool.free_slots()) > 0:
            for _ in range(min(free, len(self._reserved))):
                job = self._reserved.popleft()
                if self._revoked and job.message.id in self._revoked:
                    self._skip_revoked(job)
                    continue
                if job.message.expires is not None and job.message.is_expired():
                    self._skip_expired(job)
                    continue
                acks_late = self._running[job.ticket] = tasks[job.message.task].acks_late
                if not acks_late:
                    self._to_ack.append(self._take_delivery(job.ticket))
                self._active[job.ticket] = (job, time.time())
                self.in_submit = True
                try:
                    pool.submit(job, self._on_done)
                finally:
                    self.in_submit = False
                self.task_metrics.count(job.message.task, STARTED)
                if self.events is not None:
                    self.events.task_started(job.message.id)
                started += 1
        return started

    def _drain_inbox(self) -> None:
        """Apply the changes other threads queued (revokes, remote control)."""
        while True:
            try:
                change = self._inbox.get_nowait()
            except queue_module.Empty:
                return
            try:
                change()
            except BrokerUnavailable:
                raise
            except Exception:
                log.exception("kq: could not apply a requested change")

    def _apply_revoke(self, revoke: Revoke) -> None:
        """Act on a revoke the listener heard: drop held (ETA) messages of revoked tasks now
        rather than when they fall due (reserved ones are skipped as they come up), and stop
        running ones when asked to terminate, where the pool can."""
        ids = set(revoke.task_ids)
        dropped = [entry for entry in self._held if entry[2].message.id in ids]
        if dropped:
            self._held = [entry for entry in self._held if entry[2].message.id not in ids]
            heapq.heapify(self._held)
            for _, _, job in dropped:
                self._skip_revoked(job)
        if revoke.terminate and self._running:
            self._terminate(revoke)

    def _terminate(self, revoke: Revoke) -> None:
        if not self.pool_spec.capabilities.terminate:
            log.warning(
                "kq: the %s pool cannot terminate running tasks; %s run on",
                self.pool_name,
                ", ".join(revoke.task_ids),
            )
            return
        assert self.pool is not None  # made by run() before the loop
        for task_id in revoke.task_ids:
            if self.pool.terminate(task_id, revoke.signal):
                log.info("kq: terminated task %s with %s", task_id, revoke.signal)

    def _skip_revoked(self, job: Job) -> None:
        """Ack a revoked job without running it: REVOKED stored, ``kq_task_revoked`` fired,
        counted (it goes through :meth:`_finish` as if it had run with acks_late)."""
        self._running[job.ticket] = True
        assert self._runner is not None  # made by run() before the loop
        self._finish(job, self._runner.revoked(job, "revoked"))

    def _skip_expired(self, job: Job) -> None:
        """Dead-letter an expired job without running it, before any early ack: the runner
        stores REVOKED (as Celery does) and asks for the dead letter, which :meth:`_finish`
        sends (it goes through as if it had run with acks_late)."""
        self._running[job.ticket] = True
        assert self._runner is not None  # made by run() before the loop
        self._finish(job, self._runner.expired(job))

    def _on_done(self, job: Job, outcome: Outcome) -> None:
        self._done.put((job, outcome))

    def _collect_done(self, block: bool, timeout: float = 0.0) -> None:
        try:
            item = self._done.get(block=block, timeout=timeout if block else None)
        except queue_module.Empty:
            return
        while True:
            self._finish(*item)
            try:
                item = self._done.get_nowait()
            except queue_module.Empty:
                return

    def _finish(self, job: Job, outcome: Outcome) -> None:
        acks_late = self._running.pop(job.ticket, False)
        self._active.pop(job.ticket, None)
        self.task_metrics.ended(job.message.task, outcome.state, outcome.runtime)
        if self.events is not None:
            self.events.task_ended(job.message.id, outcome.state, outcome.runtime, outcome.error)
        if outcome.state == SUCCESS:
            self.stats.succeeded += 1
        elif outcome.state == REVOKED:
            self.stats.revoked += 1
        elif outcome.state == FAILURE:
            self.stats.failed += 1
        if acks_late:
            generation = self._generation.get(job.ticket)
            delivery = self._take_delivery(job.ticket)
            if generation != self._connection and not self._leases_survive:
                return  # its connection is gone; the broker has already requeued it
            if outcome.requeue:
                # Through a new connection if the old one was lost: its leases survived it.
                self._broker().reject(delivery, requeue=True, reason=outcome.error or "requeued")
            elif outcome.dead_letter:
                reason, _, detail = outcome.dead_letter.partition(": ")
                self._reject(delivery, MessageRejected(reason, detail))
            else:
                self._to_ack.append(delivery)

    def _event_counts(self) -> tuple[int, int]:
        """Running tasks, and tasks that ended (succeeded, failed or revoked; a retried run is
        not counted, its retry is), for heartbeats."""
        stats = self.stats
        return len(self._running), stats.succeeded + stats.failed + stats.revoked

    def _take_delivery(self, ticket: int) -> Delivery:
        self._generation.pop(ticket, None)
        return self._deliveries.pop(ticket)

    def _connection_lost(self, exc: BrokerUnavailable) -> None:
        """Close the broken connection and wait (with backoff) before the next step reopens it."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.error("kq: broker connection lost: %s; reconnecting with backoff", exc)
        if not self._leases_survive:
            # What was fetched on the broken connection is the broker's again: forget it.
            dropped = list(self._reserved) + [job for _, _, job in self._held] + self._unthrottle()
            self._reserved.clear()
            self._held.clear()
            for job in dropped:
                self._take_delivery(job.ticket)
            self._to_ack.clear()
        self._connection += 1
        if self.transport is not None:
            try:
                self.transport.disconnect()
            except Exception:  # it is broken already; dropping it is a courtesy
                pass
            self.transport = None
        delay = min(RECONNECT_MAX, RECONNECT_FIRST * 2**self._reconnects)
        self._reconnects += 1
        self._stopping.wait(delay)

    def _unthrottle(self) -> list[Job]:
        return self._throttle.drain() if self._throttle is not None else []

    def _flush_acks(self) -> None:
        if self._to_ack:
            batch, self._to_ack = self._to_ack, []
            self._broker().ack(batch)  # acks left after a lost connection are by surviving lease

    # -- shutdown -------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Return unstarted messages, let running tasks finish, ack them, close.

        If the broker is unreachable the broker-side steps are skipped with a warning: their
        messages are redelivered by the broker, which at-least-once delivery allows.
        """
        unstarted = list(self._reserved) + [job for _, _, job in self._held] + self._unthrottle()
        log.info(
            "kq: worker %s shutting down: %d running, %d reserved returned to the broker",
            self.hostname,
            len(self._running),
            len(unstarted),
        )
        self._reserved.clear()
        self._held.clear()
        try:
            try:
                for job in unstarted:
                    self._broker().reject(
                        self._take_delivery(job.ticket), requeue=True, reason="worker shutdown"
                    )
            except (BrokerUnavailable, OSError) as exc:
                log.warning(
                    "kq: could not return unstarted messages (%s); the broker will redeliver them", exc
                )
            if self.pool is not None:
                self._drain_pool()
            try:
                self._collect_done(block=False)
                self._flush_acks()
            except (BrokerUnavailable, OSError) as exc:
                log.warning("kq: could not ack finished tasks (%s); they may run again", exc)
        finally:
            if self._revocations is not None:
                self._revocations.stop()
            self.app.plugins.notify("kq_worker_stop", worker=self)
            if self.events is not None:
                self.events.worker("worker-offline", *self._event_counts())
                self.events.flush()
            if self.transport is not None:
                try:
                    self.transport.close()
                except (BrokerUnavailable, OSError) as exc:
                    log.warning("kq: could not close the broker connection: %s", exc)
            log.info(
                "kq: worker %s stopped (%d succeeded, %d failed, %d rejected)",
                self.hostname,
                self.stats.succeeded,
                self.stats.failed,
                self.stats.rejected,
            )

    def _drain_pool(self) -> None:
        """Let running tasks finish, for at most ``worker_soft_shutdown_timeout`` seconds,
        keeping the broker connection's heartbeats going meanwhile (their acks go out on it)."""
        assert self.pool is not None  # called only when run() made one
        timeout = self.app.conf.worker_soft_shutdown_timeout
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while self._running and (remaining := deadline - time.monotonic()) > 0:
            self._collect_done(block=True, timeout=min(0.5, remaining))
            if self.transport is not None:
                try:
                    self.transport.keep_alive()
                except (BrokerUnavailable, OSError):
                    pass  # the acks will fail and say so; the broker redelivers
        if not self._running:
            self.pool.shutdown(wait=True)
            return
        log.warning(
            "kq: %d tasks still running after %.0f s: abandoning them (acks_late ones "
            "go back to their queue)",
            len(self._running),
            timeout,
        )
        abandoned = [t for t, acks_late in self._running.items() if acks_late]
        self._running.clear()
        self.pool.shutdown(wait=False)
        try:
            for ticket in abandoned:
                self._broker().reject(
                    self._take_delivery(ticket), requeue=True, reason="soft shutdown timeout"
                )
        except (BrokerUnavailable, OSError) as exc:
            log.warning("kq: could not requeue abandoned tasks (%s); the broker will redeliver them", exc)

    def _broker(self) -> Transport:
        """The consumer's transport, reopened if a lost connection left none."""
        if self.transport is None:
            self.transport = self.app.new_transport()
        return self.transport
