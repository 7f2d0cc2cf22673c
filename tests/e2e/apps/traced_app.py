"""The e2e app with OpenTelemetry's SDK set up: every span the worker ends is written as one JSON
line to $KQ_TEST_SPANS, for tests/e2e/test_tracing.py to read back."""

import os

from e2e_app import app
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

_spans = open(os.environ["KQ_TEST_SPANS"], "a")  # open for the life of the worker process
_provider = TracerProvider()
_provider.add_span_processor(
    SimpleSpanProcessor(
        ConsoleSpanExporter(out=_spans, formatter=lambda span: span.to_json(indent=None) + "\n")
    )
)
trace.set_tracer_provider(_provider)


@app.task(name="traced.flaky", bind=True)
def flaky(self) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "ok"
