"""The App: tasks, settings, and the connections to the broker and the result backend."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from .backend import ResultBackend, StoredResult
from .canvas.wire import CALL_OPTIONS
from .codec import Codec, Limits
from .config import Settings, from_environ, from_object
from .current import set_current_app
from .events import EventDispatcher
from .exceptions import BrokerUnavailable, ConfigurationError, EncodeError, KQError
from .plugins import Plugins, get_plugins
from .protocol import (
    ResultMeta,
    TaskMessage,
    decode_result,
    encode_result,
    encode_task,
    exception_to_meta,
)
from .result import AsyncResult
from .revoke import of as revoke_of
from .revoke import revoke as revoke_tasks
from .routing import Router
from .serialization import Serializers
from .shared import attach as attach_shared_tasks
from .states import FAILURE
from .task import Task, new_message
from .transport import Envelope, Transport

log = logging.getLogger("kq.app")
_UNSET: Any = object()
P = ParamSpec("P")
R = TypeVar("R")


class App:
    """A kq application: the registry of tasks and the settings they are sent and run with.

    ``App("name", broker=..., backend=...)``; both default to the embedded SQLite file
    ``kq.sqlite3`` in the current directory, so no server is needed to start.
    ``backend=None`` disables results.
    """

    def __init__(
        self,
        main: str = "kq",
        *,
        broker: str | None = None,
        backend: Any = _UNSET,
        task_cls: type[Task[..., Any]] | None = None,
        **settings: Any,
    ) -> None:
        self.main = main
        #: The class ``@app.task`` instantiates unless given ``base=``: a custom Task subclass.
        self.task_cls = task_cls or Task
        self.tasks: dict[str, Task[..., Any]] = {}
        #: Entries added by ``@app.periodic``, in the shape of ``beat_schedule`` items.
        self.periodic_entries: dict[str, dict[str, Any]] = {}
        self._code_layers: list[Mapping[str, Any]] = []
        self._cli_layer: dict[str, Any] = {}
        if broker is not None:
            settings["broker_url"] = broker
        if backend is not _UNSET:
            settings["result_backend"] = backend  # None disables results
        if settings:
            self._code_layers.append(from_object(settings))  # unknown names fail here
        self._conf: Settings | None = None
        self._plugins: Plugins | None = None
        self._serializers: Serializers | None = None
        self._accept: frozenset[str] | None = None
        self._codec: Codec | None = None
        self._backend: ResultBackend | None = None
        self._wants_reply_to: bool | None = None
        self._router: Router | None = None
        self._hooks: tuple[int, Callable[..., None] | None, Callable[..., None] | None] | None = None
        self._publisher: Transport | None = None
        self._events: EventDispatcher | None = None  # task-sent events, made on first use
        self._publish_lock = threading.Lock()
        self._setup_lock = threading.RLock()
        self.origin = f"{os.getpid()}@{socket.gethostname()}"
        set_current_app(self)
        attach_shared_tasks(self)

    def __repr__(self) -> str:
        return f"<kq.App {self.main}>"

    # -- configuration --------------------------------------------------------------------

    def config_from_object(self, obj: Any) -> None:
        """Add settings from a mapping, an object, or a module given by its dotted name."""
        self._code_layers.append(from_object(obj))
        self._reset()

    def configure(self, **settings: Any) -> None:
        """Add settings in code (the same layer as ``config_from_object``; later calls win)."""
        self._code_layers.append(from_object(settings))
        self._reset()

    def override(self, **settings: Any) -> None:
        """Add settings that win over everything, environment included (used for CLI flags)."""
        self._cli_layer.update(from_object({k: v for k, v in settings.items() if v is not None}))
        self._reset()

    def _reset(self) -> None:
        if self._publisher is not None or self._backend is not None:
            raise KQError("settings cannot change after the app has connected; configure first")
        self._conf = None
        self._serializers = None
        self._accept = None
        self._codec = None
        self._wants_reply_to = None

    @property
    def conf(self) -> Settings:
        """The effective settings: defaults < code < ``KQ_*`` environment < command line."""
        if self._conf is None:
            with self._setup_lock:
                if self._conf is None:
                    conf = Settings.build(*self._code_layers, from_environ(), self._cli_layer)
                    self._conf = conf
                    self._validate(conf)
                    self.plugins.notify("kq_app_configure", app=self)
        return self._conf

    @property
    def plugins(self) -> Plugins:
        if self._plugins is None:
            self._plugins = get_plugins()
        return self._plugins

    def _validate(self, conf: Settings) -> None:
        serializers = self.plugins.serializers()
        for setting in ("task_serializer", "result_serializer"):
            try:
                serializers.get(getattr(conf, setting))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{setting}: {exc}") from None
        try:
            self._accept = serializers.accept_set(conf.accept_content)
        except ConfigurationError as exc:
            raise ConfigurationError(f"accept_content: {exc}") from None
        warning = serializers.unsafe_warning(
            conf.task_serializer, conf.result_serializer, conf.accept_content
        )
        if warning:
            log.warning("%s", warning)
        self._serializers = serializers
        self._router = Router(conf.task_routes, conf.task_default_queue)

    @property
    def router(self) -> Router:
        """The ``task_routes`` setting, compiled: picks each call's queue (see kq.routing)."""
        self.conf  # noqa: B018
        assert self._router is not None
        return self._router

    @property
    def serializers(self) -> Serializers:
        self.conf  # noqa: B018 - builds and validates the settings first
        assert self._serializers is not None
        return self._serializers

    @property
    def accept(self) -> frozenset[str]:
        """The content types workers of this app decode (from ``accept_content``)."""
        self.conf  # noqa: B018
        assert self._accept is not None
        return self._accept

    @property
    def codec(self) -> Codec:
        """Compression, signing and size limits of messages (see kq.codec). Built on first use,
        so a signer's key files are read by processes that send or receive, and by
        :meth:`check` at start-up."""
        if self._codec is None:
            with self._setup_lock:
                if self._codec is None:
                    self._codec = self._make_codec(self.conf)
        return self._codec

    def _make_codec(self, conf: Settings) -> Codec:
        plugins = self.plugins
        signer = None
        if conf.message_signer is not None:
            spec = plugins.signers.get(conf.message_signer)
            signer = spec.factory(conf.message_signer_options)
        codec = Codec(
            (p.spec for _, p in plugins.compressions.items()),
            signer,
            Limits(conf.message_max_size, conf.message_max_repr, conf.message_max_depth),
        )
        if conf.task_compression is not None:
            try:
                codec.compression(conf.task_compression)
            except ConfigurationError as exc:
                raise ConfigurationError(f"task_compression: {exc}") from None
        return codec

    def check(self) -> None:
        """Fail now, with a clear message, if the broker or backend URL has no plugin, or the
        compression or message signer is missing or misconfigured."""
        conf = self.conf
        self.plugins.check()
        self.codec  # noqa: B018
        self.plugins.transport_for(conf.broker_url)
        if conf.result_backend:
            self.plugins.backend_for(conf.result_backend)

    # -- tasks ----------------------------------------------------------------------------

    # The overloads let type checkers see the function's signature on the Task (Task[P, R]);
    # a bound task's first parameter (``self``, the task) is dropped from P.
    @overload
    def task(
        self, fun: Callable[Concatenate[Any, P], R], /, *, bind: Literal[True], **options: Any
    ) -> Task[P, R]: ...
    @overload
    def task(self, fun: Callable[P, R], /, *, bind: Literal[False] = False, **options: Any) -> Task[P, R]: ...
    @overload
    def task(
        self, /, *, bind: Literal[True], **options: Any
    ) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...
    @overload
    def task(
        self, /, *, bind: Literal[False] = False, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...
    @overload
    def task(self, /, *, bind: bool, **options: Any) -> Callable[[Callable[..., Any]], Task[..., Any]]: ...

    def task(self, fun: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., bind=True)``.

        Options: ``name``, ``bind``, ``queue``, ``priority`` (the default for calls that give
        none), ``acks_late``, ``ignore_result``, ``track_started``, ``serializer``,
        ``time_limit``, ``soft_time_limit``, ``reject_on_worker_lost``, ``rate_limit`` and
        ``global_rate_limit`` (docs/rate-limits.md), ``typing`` (check arguments when sending),
        ``base`` (a Task subclass instead of ``task_cls``), the retry policy (``autoretry_for``,
        ``max_retries``, ``default_retry_delay``, ``retry_backoff``, ``retry_backoff_max``,
        ``retry_jitter``: see kq.retry) and ``store_errors_even_if_ignored``.
        """

        def register(f: Callable[..., Any]) -> Task[..., Any]:
            name = options.pop("name", None) or self._task_name(f)
            if name in self.tasks and self.tasks[name].fun is not f:
                raise KQError(f"a different task is already registered as {name!r}")
            cls = options.pop("base", None) or self.task_cls
            task: Task[..., Any] = cls(self, f, name, **options)
            self.tasks[name] = task
            return task

        return register(fun) if fun is not None else register

    def periodic(
        self,
        schedule: Any,
        *,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        missed: str | None = None,
        **task_options: Any,
    ) -> Callable[[Any], Task[..., Any]]:
        """Register a task that ``kq beat`` publishes on ``schedule``.

        ``@app.periodic(crontab(minute=0), args=(1,))`` on a function (registered as a task with
        ``task_options``) or on a task. ``schedule``, ``args``, ``kwargs``, ``options`` and
        ``missed`` mean what they mean in the ``beat_schedule`` setting; ``name`` names the
        entry (default: the task's name). See docs/beat.md.
        """

        def register(target: Any) -> Task[..., Any]:
            task = target if isinstance(target, Task) else self.task(target, **task_options)
            entry = name or task.name
            if entry in self.periodic_entries:
                raise KQError(f"a periodic entry named {entry!r} already exists; pass name=")
            self.periodic_entries[entry] = {
                "task": task.name,
                "schedule": schedule,
                "args": list(args),
                "kwargs": dict(kwargs or {}),
                "options": dict(options or {}),
                "missed": missed,
            }
            return task

        return register

    def _task_name(self, fun: Callable[..., Any]) -> str:
        module = fun.__module__
        if module == "__main__":
            module = self.main
        return f"{module}.{fun.__qualname__}"

    # -- sending --------------------------------------------------------------------------

    def new_transport(self) -> Transport:
        """Open a new connection to the broker (consumers each need their own)."""
        conf = self.conf
        spec = self.plugins.transport_for(conf.broker_url)
        return spec.factory(conf.broker_url, conf.broker_transport_options)

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        serializer: str | None = None,
        compression: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name; the task need not be registered in this process.

        The queue is ``queue`` if given, else the ``task_routes`` setting's, else the task's own,
        else ``task_default_queue`` (see docs/routing.md).
        """
        args, kwargs = args or (), kwargs or {}
        queue, options["priority"] = self.router.destination(
            name, args, kwargs, queue, options, self.tasks.get(name)
        )
        message = new_message(name, args, kwargs, origin=self.origin, reply_to=self._reply_queue(), **options)
        self.publish(message, queue, serializer, compression)
        return AsyncResult(message.id, app=self, task_name=name)

    def _reply_queue(self) -> str | None:
        """The reply queue to put in messages, for backends that send results to the caller.
        Whether the backend is such is settled once per configuration, off the publish path."""
        if self._wants_reply_to is None:
            url = self.conf.result_backend
            self._wants_reply_to = bool(url and self.plugins.backend_for(url).capabilities.reply_to)
        return self.backend.reply_queue() if self._wants_reply_to else None

    def send_many(self, signatures: Iterable[Any]) -> list[AsyncResult]:
        """Send many tasks in as few broker round trips as the transport allows.

        Fan-out (a group, a chord header, a batch import) is dominated by one round trip per
        publish; this encodes every message first and hands them to the transport's
        ``publish_many`` in one go (one pipeline on Redis). Each item is a signature, or anything
        with ``task`` (a name), ``args``, ``kwargs`` and ``options`` (``apply_async`` options);
        registered tasks' defaults (queue, serializer, ignore_result) apply as in ``apply_async``.
        Messages with an ETA on a transport with native delay are published one by one.
        """
        reply_to = self._reply_queue()
        router = self.router
        batch: list[tuple[str, TaskMessage, Envelope]] = []
        for sig in signatures:
            if getattr(sig, "subtask_type", None):
                raise TypeError(
                    f"send_many sends single tasks; send the {sig.subtask_type} "
                    f"{sig!r} with its own apply_async()"
                )
            options = dict(sig.options or {})
            unknown = options.keys() - CALL_OPTIONS
            if unknown:
                raise TypeError(
                    f"{sig.task}: unknown option(s) {sorted(unknown)}; accepted: {sorted(CALL_OPTIONS)}"
                )
            task = self.tasks.get(sig.task)
            args, kwargs = tuple(sig.args or ()), dict(sig.kwargs or {})
            queue, serializer = options.pop("queue", None), options.pop("serializer", None)
            compression = options.pop("compression", None)
            if task is not None:
                task._check_arguments(args, kwargs)
                serializer = serializer or task.serializer
                compression = compression or task.compression
                if options.get("ignore_result") is None:
                    options["ignore_result"] = task.ignore_result
            elif options.get("ignore_result") is None:
                options.pop("ignore_result", None)
            queue, options["priority"] = router.destination(sig.task, args, kwargs, queue, options, task)
            message = new_message(sig.task, args, kwargs, origin=self.origin, reply_to=reply_to, **options)
            batch.append((queue, message, self._encode(message, serializer, compression)))
        self._publish_batch(batch)
        return [AsyncResult(message.id, app=self, task_name=message.task) for _, message, _ in batch]

    def publish(
        self, message: TaskMessage, queue: str, serializer: str | None = None, compression: str | None = None
    ) -> None:
        """Encode and publish one task message, retrying through a broken connection."""
        self._publish_batch([(queue, message, self._encode(message, serializer, compression))])

    def _encode(
        self, message: TaskMessage, serializer: str | None, compression: str | None = None
    ) -> Envelope:
        conf = self.conf
        try:
            envelope = encode_task(
                message, self.serializers, serializer or conf.task_serializer, conf.message_max_repr
            )
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"arguments of {message.task} cannot be serialized: {exc}") from exc
        return self.codec.seal(envelope, compression or conf.task_compression)

    def _publish_batch(self, batch: Sequence[tuple[str, TaskMessage, Envelope]]) -> None:
        """Publish encoded messages on the app's publisher connection, reopening it and retrying
        the whole batch (``task_publish_retries`` times, with backoff) when the broker drops it.
        A retried batch may publish some messages twice; at-least-once delivery allows that."""
        if not batch:
            return
        before, after = self._publish_hooks()
        if before is not None:
            for queue, message, envelope in batch:
                before(app=self, message=message, queue=queue, envelope=envelope)
        for attempt in itertools.count():
            try:
                with self._publish_lock:
                    if self._publisher is None:
                        self._publisher = self.new_transport()
                    publisher = self._publisher
                    if len(batch) == 1:
                        queue, message, envelope = batch[0]
                        eta = message.eta if publisher.capabilities.native_delay else None
                        publisher.publish(queue, envelope, eta=eta)
                    else:
                        later = publisher.capabilities.native_delay
                        now = [(q, env) for q, m, env in batch if not (later and m.eta)]
                        if now:
                            publisher.publish_many(now)
                        for queue, message, envelope in batch if later else ():
                            if message.eta:
                                publisher.publish(queue, envelope, eta=message.eta)
                break
            except BrokerUnavailable as exc:
                self._drop_publisher()
                if attempt >= self.conf.task_publish_retries:
                    raise
                delay = min(2.0, 0.2 * 2**attempt)
                log.warning(
                    "kq: publish of %s failed (%s); retrying in %.1f s",
                    batch[0][1].id if len(batch) == 1 else f"{len(batch)} messages",
                    exc,
                    delay,
                )
                time.sleep(delay)
        if after is not None:
            for queue, message, _ in batch:
                after(app=self, message=message, queue=queue)
        if self.conf.task_send_sent_event:
            if self._events is None:
                self._events = EventDispatcher(self, self.origin)
            for queue, message, _ in batch:
                self._events.task_sent(message, queue)

    def _publish_hooks(self) -> tuple[Callable[..., None] | None, Callable[..., None] | None]:
        """The before/after publish hooks, looked up again only when plugins were (un)registered
        (a ``kq.signals`` receiver connected): most apps have none, and then the publish path
        does not call into pluggy at all."""
        plugins = self.plugins
        if self._hooks is None or self._hooks[0] != plugins.generation:
            self._hooks = (
                plugins.generation,
                plugins.notifier("kq_before_publish"),
                plugins.notifier("kq_after_publish"),
            )
        return self._hooks[1], self._hooks[2]

    def broadcast(self, channel: str, envelope: Envelope) -> None:
        """Send ``envelope`` to every current subscriber of ``channel`` through the transport's
        fan-out, on the publisher connection (workers listen for revokes this way)."""
        try:
            with self._publish_lock:
                if self._publisher is None:
                    self._publisher = self.new_transport()
                self._publisher.broadcast(channel, envelope)
        except BrokerUnavailable:
            self._drop_publisher()
            raise

    def revoke(
        self, task_ids: str | Sequence[str], *, terminate: bool = False, signal: str | int = "SIGTERM"
    ) -> None:
        """Revoke tasks by id: every worker skips them, including workers started later (for
        ``worker_revoked_expires`` seconds); with ``terminate=True`` a worker running one stops
        it with ``signal`` where its pool can. See docs/tasks.md, "Revoking"."""
        revoke_tasks(self, revoke_of(task_ids, terminate, signal))

    def _drop_publisher(self) -> None:
        with self._publish_lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.disconnect()  # not close(): a silent peer would never answer a close
            except (BrokerUnavailable, OSError):
                pass  # it is broken already

    # -- results --------------------------------------------------------------------------

    @property
    def backend(self) -> ResultBackend:
        """The result backend, connected on first use."""
        if self._backend is None:
            with self._setup_lock:
                if self._backend is None:
                    url = self.conf.result_backend
                    if not url:
                        raise KQError("this app has no result backend (result_backend is None)")
                    spec = self.plugins.backend_for(url)
                    options = dict(self.conf.result_backend_options)
                    if spec.capabilities.reply_to:
                        # Results travel over the broker (rpc://): tell the backend which one.
                        options.setdefault("broker_url", self.conf.broker_url)
                    self._backend = spec.factory(url, options)
        return self._backend

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802
        return AsyncResult(task_id, app=self, task_name=task_name)

    def store_result(self, meta: ResultMeta, reply_to: str | None = None) -> None:
        """Encode and store a result; a value that cannot be encoded is stored as a FAILURE."""
        serializer = self.conf.result_serializer
        try:
            payload = encode_result(meta, self.serializers, serializer)
        except (TypeError, ValueError) as exc:
            error = EncodeError(f"the result of {meta.name} cannot be serialized: {exc}")
            meta = ResultMeta(
                task_id=meta.task_id,
                state=FAILURE,
                result=exception_to_meta(error),
                date_done=meta.date_done,
                name=meta.name,
                worker=meta.worker,
                retries=meta.retries,
                queue=meta.queue,
            )
            payload = encode_result(meta, self.serializers, serializer)
        stored = StoredResult(meta.task_id, meta.state, payload, reply_to)
        self.backend.store(stored, self.conf.result_expires)

    def _decode(self, stored: StoredResult | None) -> ResultMeta | None:
        if stored is None:
            return None
        return decode_result(stored.payload, self.serializers, self.conf.result_serializer)

    def read_result(self, task_id: str) -> ResultMeta | None:
        return self._decode(self.backend.get(task_id))

    def wait_for_result(self, task_id: str, timeout: float | None) -> ResultMeta | None:
        return self._decode(self.backend.wait(task_id, timeout))

    def forget_result(self, task_id: str) -> None:
        self.backend.forget(task_id)

    # -- lifetime -------------------------------------------------------------------------

    def after_fork(self) -> None:
        """In a forked child: forget the connections inherited from the parent, without closing
        them (they are the parent's), so this process opens its own on first use."""
        self._publisher = None
        self._backend = None
        self._events = None
        self._publish_lock = threading.Lock()
        self._setup_lock = threading.RLock()
        self.origin = f"{os.getpid()}@{socket.gethostname()}"

    def close(self) -> None:
        """Close the publisher and backend connections (they reopen on next use)."""
        with self._publish_lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None
