"""The pool interface: where task code actually runs.

The worker hands the pool one :class:`Job` at a time, never more than :meth:`Pool.free_slots`,
and the pool runs it with :attr:`PoolContext.runner` (the kernel's task executor) in whatever
execution context it provides: the worker's own thread, a thread, a process, a greenlet, an
event loop. The runner already stores the result and fires the task hooks; the pool reports the
returned :class:`Outcome` through ``on_done`` so the worker can ack and refill.

A pool whose jobs run in other processes either lets forked children inherit the runner (and
calls ``runner.app.after_fork()`` in each, so it opens its own connections), or rebuilds the app
in each child from :attr:`PoolContext.app_spec` (``kq.loader.load_app``) and makes its own
``kq.execution.Runner(app, hostname)``.

What the worker relies on, checked by :class:`kq.testing.contracts.PoolContract`: a job's slot
is free again before its ``on_done`` runs; ``shutdown`` may be called more than once; after
shutdown ``submit`` raises :class:`~kq.exceptions.PoolClosed`.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from .exceptions import ConfigurationError, PluginError
from .protocol import TaskMessage
from .states import FAILURE

log = logging.getLogger("kq.pool")


@attrs.frozen
class Job:
    """One decoded task message, ready to run."""

    message: TaskMessage
    queue: str
    redelivered: bool = False
    #: Set by the worker to match the outcome to its delivery; pools pass it through untouched.
    ticket: int = 0
    #: Effective limits in seconds (message, else task, else settings); ``None`` for none. Pools
    #: enforce the ones their capabilities declare.
    time_limit: float | None = None
    soft_time_limit: float | None = None


@attrs.frozen
class Outcome:
    """What the worker needs to know after a job ran (the full result is in the backend)."""

    task_id: str
    state: str
    runtime: float
    #: One line describing the error, for the worker's log; ``None`` on success.
    error: str | None = None
    #: Put the message back on its queue instead of acking it (acks_late tasks only): the job
    #: could not run to an end (its process died and ``reject_on_worker_lost`` is set) or its
    #: result could not be stored. The kernel decides; pools pass it through.
    requeue: bool = False
    #: Refuse the message for good with this reason (``"expired: ..."``) instead of acking it:
    #: the worker dead-letters it where the transport can, if it still holds the delivery
    #: (it checks expiry itself before an early ack; see :meth:`kq.execution.Runner.expired`).
    dead_letter: str | None = None

    @classmethod
    def failed(cls, job: Job, exc: BaseException, runtime: float = 0.0) -> Outcome:
        """A FAILURE outcome for ``job`` naming ``exc``: what a pool reports when the runner
        itself raised (which it should never do) so that the worker can go on."""
        return cls(job.message.id, FAILURE, runtime, error=f"{type(exc).__name__}: {exc}")


def report_done(on_done: Callable[[Job, Outcome], None], job: Job, outcome: Outcome) -> None:
    """Give ``outcome`` to the worker from a pool's thread, greenlet or loop. Pools call this
    after freeing the job's slot; a failing ``on_done`` is logged, so it never kills the
    pool's thread (and with it a slot)."""
    try:
        on_done(job, outcome)
    except Exception:
        log.exception("kq: on_done failed for task %s", job.message.id)


def report_lost(job: Job, exc: BaseException, runtime: float = 0.0) -> Outcome:
    """The default :attr:`PoolContext.lost` where no worker supplies one (tests, embedding):
    the job failed, nothing is stored."""
    return Outcome.failed(job, exc, runtime)


def _at_least_one(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"worker_concurrency must be at least 1, got {value!r}")


@attrs.frozen
class PoolCapabilities:
    """What a pool can do; the worker and CLI check these before relying on a feature."""

    soft_time_limit: bool = False
    hard_time_limit: bool = False
    max_tasks_per_child: bool = False
    autoscale: bool = False
    #: Runs ``async def`` tasks natively on an event loop.
    async_tasks: bool = False
    #: Jobs run in other processes (see the module docstring for how they get a runner).
    processes: bool = False
    #: :meth:`Pool.terminate` stops a running job (``revoke(terminate=True)``).
    terminate: bool = False


@attrs.frozen
class PoolContext:
    """Everything a pool gets from the worker when it is created."""

    concurrency: int = attrs.field(validator=_at_least_one)
    #: Runs one job to the end in the calling thread and returns its outcome; never raises.
    runner: Callable[[Job], Outcome]
    #: ``module:attribute`` of the app, for pools that rebuild it in child processes.
    app_spec: str | None = None
    #: Pool-specific settings from ``worker_pool_options``.
    options: Mapping[str, Any] = attrs.field(factory=dict)
    #: Reports a job that could not run to its end, in the worker's process:
    #: ``lost(job, exc, runtime)`` stores the failure (or decides to requeue) and returns the
    #: Outcome to pass to ``on_done``; it never raises. Pass ``kq.exceptions.WorkerLostError``
    #: when the job's process died and ``kq.exceptions.TimeLimitExceeded`` when the pool
    #: stopped it. The worker passes :meth:`kq.execution.Runner.lost`.
    lost: Callable[..., Outcome] = report_lost
    #: Replace a child after this many jobs / above this RSS in KiB (``max_tasks_per_child``).
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    #: The worker's name, for pools that name their children after it.
    hostname: str = "kq"


class Pool(abc.ABC):
    """Base class of every pool. Subclasses set :attr:`capabilities`."""

    capabilities: ClassVar[PoolCapabilities] = PoolCapabilities()

    def __init__(self, context: PoolContext) -> None:
        self.context = context

    @property
    def concurrency(self) -> int:
        return self.context.concurrency

    @abc.abstractmethod
    def start(self) -> None:
        """Get ready to run jobs (start threads or processes)."""

    @abc.abstractmethod
    def submit(self, job: Job, on_done: Callable[[Job, Outcome], None]) -> None:
        """Start running ``job``; call ``on_done(job, outcome)`` from any thread when it ends.

        The worker only submits while :meth:`free_slots` is positive. ``on_done`` is cheap and
        thread-safe. A pool where a job runs synchronously (solo) calls it before returning.
        """

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many more jobs could start right now."""

    @abc.abstractmethod
    def shutdown(self, wait: bool) -> None:
        """Stop. ``wait=True`` lets running jobs finish first; ``False`` abandons them."""

    def terminate(self, task_id: str, signal_name: str) -> bool:
        """Stop the running job of task ``task_id`` (``capabilities.terminate``), with the
        signal named ``signal_name`` (``"SIGTERM"``) where the job has a process of its own,
        and report it through :attr:`PoolContext.lost` with a
        :class:`~kq.exceptions.TaskRevoked` (the kernel stores REVOKED). Return ``False``
        when no job of that task runs here right now (it ended, or no process has taken it
        yet). Called from the worker's thread."""
        raise PluginError(f"{type(self).__name__} cannot terminate jobs (no terminate capability)")

    def grow(self, n: int) -> None:
        """Add ``n`` slots (``capabilities.autoscale``); :attr:`concurrency` must follow."""
        raise PluginError(f"{type(self).__name__} cannot grow (no autoscale capability)")

    def shrink(self, n: int) -> None:
        """Remove up to ``n`` idle slots, never below one (``capabilities.autoscale``)."""
        raise PluginError(f"{type(self).__name__} cannot shrink (no autoscale capability)")


@attrs.frozen
class PoolSpec:
    """A concurrency model, as a plugin declares it in ``kq_pools``."""

    #: The name users pass to ``kq worker --pool``; each may be claimed once.
    name: str
    #: Called as ``factory(context)``.
    factory: Callable[[PoolContext], Pool]
    #: Defaults to the factory's own ``capabilities`` attribute (the interface class declares
    #: them once); a factory that is a plain function must pass them here.
    capabilities: PoolCapabilities = attrs.field(
        default=attrs.Factory(
            lambda spec: getattr(spec.factory, "capabilities", None) or PoolCapabilities(), takes_self=True
        )
    )
    #: Default ``--concurrency`` when the user gives none; ``None`` means the number of CPUs.
    default_concurrency: int | None = None
    #: Called by ``kq worker`` before the user's app is imported, when this pool is named on the
    #: command line or in ``KQ_WORKER_POOL``: gevent and eventlet monkey-patch here.
    setup: Callable[[], None] | None = None
    description: str = ""
