"""Every hook kq calls, in one module.

A plugin is a module (or object) with functions decorated ``@kq.hookimpl`` whose names match the
specs below; it implements only the hooks it needs. The *provider* hooks return a list of spec
objects and are collected from every plugin; a name or URL scheme may be claimed by only one
plugin. The *lifecycle* hooks are notifications: their return values are ignored, and an
exception raised in one is logged and does not stop a task or the worker.

Arguments are passed by keyword, so an implementation may accept any subset of them, and new
arguments can be added without breaking existing plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # imported for annotations only; these modules import nothing from here
    import click

    from .backend import BackendSpec
    from .codec import CompressionSpec, SignerSpec
    from .pool import PoolSpec
    from .protocol import TaskMessage
    from .serialization import SerializerSpec
    from .specs import CanvasPrimitiveSpec, ScheduleStoreSpec, ScheduleTypeSpec
    from .transport import Delivery, Envelope, TransportSpec

PROJECT = "kq"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- providers -------------------------------------------------------------------------------


@hookspec
def kq_transports() -> list[TransportSpec]:
    """Return the brokers this plugin provides.

    Each :class:`~kq.transport.TransportSpec` names its URL schemes, a ``factory(url, options)``
    returning a :class:`~kq.transport.Transport`, and its capabilities. Return ``[]`` (or do not
    implement the hook) if the plugin provides none.
    """


@hookspec
def kq_serializers() -> list[SerializerSpec]:
    """Return the serialization formats this plugin provides, as
    :class:`~kq.serialization.SerializerSpec` objects.

    Set ``safe=False`` for a format whose loader can run code; it stays refused unless the user
    lists it in ``accept_content``.
    """


@hookspec
def kq_compressions() -> list[CompressionSpec]:
    """Return the compression formats this plugin provides, as :class:`~kq.codec.CompressionSpec`.

    The spec's ``decompress(data, limit)`` must stop after ``limit + 1`` bytes: workers inflate
    untrusted bytes, and the limit is what stops a small message from filling memory.
    """


@hookspec
def kq_message_signers() -> list[SignerSpec]:
    """Return ways of signing messages, as :class:`~kq.codec.SignerSpec`.

    The one named by the ``message_signer`` setting signs everything the app publishes and
    verifies everything its workers receive, before a byte is deserialized.
    """


@hookspec
def kq_pools() -> list[PoolSpec]:
    """Return the concurrency models this plugin provides, as :class:`~kq.pool.PoolSpec`.

    The spec's ``name`` is what users pass to ``kq worker --pool``.
    """


@hookspec
def kq_result_backends() -> list[BackendSpec]:
    """Return the result backends this plugin provides, as :class:`~kq.backend.BackendSpec`.

    A plugin serving both a broker and results under one scheme (``sqlite``, ``redis``) returns
    a transport spec and a backend spec; the two registries are separate.
    """


@hookspec
def kq_schedule_types() -> list[ScheduleTypeSpec]:
    """Return the schedule kinds this plugin adds to beat, as :class:`~kq.specs.ScheduleTypeSpec`."""


@hookspec
def kq_schedule_stores() -> list[ScheduleStoreSpec]:
    """Return the places beat may keep its state and leader lock, as
    :class:`~kq.specs.ScheduleStoreSpec`."""


@hookspec
def kq_canvas_primitives() -> list[CanvasPrimitiveSpec]:
    """Return workflow primitives, as :class:`~kq.specs.CanvasPrimitiveSpec`.

    Each is a :class:`kq.Signature` subclass with its own ``subtask_type`` (the spec's name);
    workers rebuild it from a message with the spec's factory and call its ``plan``. kq's own
    chain, group and chord come through this hook too. See PLUGIN_GUIDE.md, "Canvas primitives".
    """


@hookspec
def kq_cli_commands(cli: click.Group) -> None:
    """Add subcommands to the ``kq`` command line: call ``cli.add_command(...)``.

    Return nothing. Command names must not clash with kq's own or another plugin's.
    """


# --- lifecycle -------------------------------------------------------------------------------


@hookspec
def kq_app_configure(app: Any) -> None:
    """Called when ``app``'s settings are built, before it first connects (again if the app is
    reconfigured before connecting).

    Read ``app.conf`` to configure the plugin; do not change settings here.
    """


@hookspec
def kq_worker_start(worker: Any) -> None:
    """Called when a worker has started its pool and is about to consume."""


@hookspec
def kq_worker_stop(worker: Any) -> None:
    """Called when a worker has stopped consuming and its pool has finished."""


@hookspec
def kq_before_publish(app: Any, message: TaskMessage, queue: str, envelope: Envelope) -> None:
    """Called before a task message is published to ``queue``.

    ``envelope`` is what goes on the wire; a plugin may add entries to its ``headers`` dict
    (a trace context, say), which workers see in ``request.headers``.
    """


@hookspec
def kq_after_publish(app: Any, message: TaskMessage, queue: str) -> None:
    """Called after a task message was handed to the broker."""


@hookspec
def kq_task_prerun(task: Any, request: Any) -> None:
    """Called in the executing thread/process just before the task body runs.

    ``request`` is the task's :class:`~kq.task.Request` (id, args, kwargs, retries, ...).
    """


@hookspec
def kq_task_postrun(task: Any, request: Any, state: str, retval: Any) -> None:
    """Called after the task body ran, whatever the outcome; ``state`` is how this run ended
    (``RETRY`` when the task will run again)."""


@hookspec
def kq_task_success(task: Any, request: Any, retval: Any) -> None:
    """Called after the task returned ``retval``, before its result is stored."""


@hookspec
def kq_task_failure(task: Any, request: Any, exc: BaseException, traceback: str) -> None:
    """Called after the task raised ``exc`` and will not be retried."""


@hookspec
def kq_task_retry(task: Any, request: Any, reason: BaseException) -> None:
    """Called in the executing thread/process when a run ends in a retry (``self.retry()``, or an
    ``autoretry_for`` exception while retries are left), before RETRY is stored and the next
    attempt sent; ``reason`` is the exception given to retry (the ``kq.Retry`` itself if none)."""


@hookspec
def kq_task_revoked(request: Any, reason: str) -> None:
    """Called when a task is not run because it was revoked or had expired (``reason``)."""


@hookspec
def kq_message_rejected(delivery: Delivery, reason: str, detail: str) -> None:
    """Called when the worker refuses a message it received.

    ``reason`` is a short word (``decode``, ``content-type``, ``unknown-task``, ``malformed``,
    ``expired`` for a task past its ``expires``, or a word a codec plugin gives, such as
    ``untrusted`` or ``over-limit``), ``detail`` a sentence for humans. The message has already
    been rejected (dead-lettered to ``<queue>.dlq`` where the transport supports it, see
    ``kq dlq``); the hook is for counting and alerting.
    """
