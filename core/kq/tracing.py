"""OpenTelemetry spans for publishing and running tasks: kq's ``tracing`` plugin.

A ``send <task>`` PRODUCER span wraps each publish and its W3C trace context travels in the
message headers (``traceparent``; extra headers are allowed in Celery's protocol 2, so Celery
workers ignore it or trace with it); the worker runs the task in a ``run <task>`` CONSUMER span
whose parent is that context.

The entry point registers :data:`plugin`, which implements no hook at all without the
``opentelemetry-api`` package. With it, the span hooks are registered only once a tracer provider
is configured (an SDK set up) when an app is configured or a worker starts; until then publishing
and running find no implementation and skip the calls, and no header is added.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any

from .hookspecs import hookimpl

#: Span attribute names, from OpenTelemetry's messaging semantic conventions where one exists.
SYSTEM, DESTINATION, MESSAGE_ID, OPERATION = (
    "messaging.system",
    "messaging.destination.name",
    "messaging.message.id",
    "messaging.operation.type",
)
TASK_NAME, RETRIES, STATE = "kq.task.name", "kq.task.retries", "kq.task.state"


class _Tracing:
    """The hooks; spans started in one hook and ended in a later one are kept by task id."""

    def __init__(self) -> None:
        #: Set when the hooks are registered: the SDK builds a new tracer on every ``get_tracer``.
        self.tracer: Any = None
        self._sending: dict[str, Any] = {}
        self._running: dict[str, tuple[Any, Any]] = {}
        #: The id and context of the last run span this thread ended: a chain's next step and a
        #: retry are sent after the body returned, outside that span, and still become its children.
        self._last = threading.local()

    @hookimpl
    def kq_before_publish(self, message: Any, queue: str, envelope: Any) -> None:
        from opentelemetry import propagate, trace

        parent = None
        last = getattr(self._last, "run", None)
        if (
            not trace.get_current_span().get_span_context().is_valid
            and last is not None
            and last[0] in (message.parent_id, message.id)
        ):  # the next step, or a retry
            parent = trace.set_span_in_context(trace.NonRecordingSpan(last[1]))
        span = self.tracer.start_span(
            f"send {message.task}",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                SYSTEM: "kq",
                DESTINATION: queue,
                MESSAGE_ID: message.id,
                OPERATION: "send",
                TASK_NAME: message.task,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        envelope.headers.update(carrier)
        old = self._sending.pop(message.id, None)
        if old is not None:  # an earlier publish of this id raised before kq_after_publish
            old.end()
        self._sending[message.id] = span

    @hookimpl
    def kq_after_publish(self, message: Any) -> None:
        span = self._sending.pop(message.id, None)
        if span is not None:
            span.end()

    @hookimpl
    def kq_task_prerun(self, task: Any, request: Any) -> None:
        from opentelemetry import context, propagate, trace

        span = self.tracer.start_span(
            f"run {task.name}",
            context=propagate.extract(dict(request.headers)),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                SYSTEM: "kq",
                DESTINATION: request.queue or "",
                MESSAGE_ID: request.id,
                OPERATION: "process",
                TASK_NAME: task.name,
                RETRIES: request.retries,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        self._running[request.id] = (span, token)

    @hookimpl
    def kq_task_failure(self, request: Any, exc: BaseException) -> None:
        running = self._running.get(request.id)
        if running is not None:
            from opentelemetry.trace import Status, StatusCode

            running[0].record_exception(exc)
            running[0].set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    @hookimpl
    def kq_task_postrun(self, request: Any, state: str) -> None:
        running = self._running.pop(request.id, None)
        if running is None:
            return
        from opentelemetry import context

        span, token = running
        span.set_attribute(STATE, state)  # the status stays UNSET unless the task failed
        context.detach(token)
        span.end()
        self._last.run = (request.id, span.get_span_context())


SPANS = "tracing-spans"
_spans = _Tracing()


def _enable(plugins: Any) -> None:
    # Whoever set a tracer provider up imported opentelemetry.trace; if nobody did, do not pay
    # for importing it here.
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or SPANS in plugins.infos:
        return
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _spans.tracer = trace.get_tracer("kq")
        plugins.register(_spans, SPANS)


class _Switch:
    """Registers the span hooks (as the ``tracing-spans`` plugin) once OpenTelemetry is set up;
    set it up before the app is first used, or at import of the worker's app module."""

    @hookimpl
    def kq_app_configure(self, app: Any) -> None:
        _enable(app.plugins)

    @hookimpl
    def kq_worker_start(self, worker: Any) -> None:
        _enable(worker.app.plugins)


#: What the entry point registers: the switch, or an object with no hook when the API is absent.
plugin: object = _Switch() if importlib.util.find_spec("opentelemetry") is not None else object()
