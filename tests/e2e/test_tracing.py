"""OpenTelemetry spans with a real worker process on SQLite: the client's ``send`` span is the
parent of the worker's ``run`` span (its context travels in the message headers), a failed task's
span is an error, and a chain stays one trace. The worker writes its spans to a file
(apps/traced_app.py); this process keeps its own in the SDK's in-memory exporter."""

import json
import pathlib
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kq import Signature, chain
from kq.plugins import reload_plugins


@pytest.fixture
def exporter():
    """This process's spans. The global tracer provider can be set only once per process, so
    it is put back unset afterwards (as OpenTelemetry's own test helpers do), and the plugins
    reloaded, for the tests that follow."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    reload_plugins()  # drops the span hooks the client's app switched on


@pytest.fixture(params=["threads", "prefork"])
def worker_spans(request, tmp_path: pathlib.Path, env, start_worker):
    """Start a traced worker; return ``read(count)``: the first ``count`` spans it ended."""
    path = tmp_path / "spans.jsonl"
    env["KQ_TEST_SPANS"] = str(path)
    start_worker("-P", request.param, "-c", "1", app="traced_app:app")

    def read(count: int) -> list[dict]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
            time.sleep(0.05)
        raise AssertionError(f"the worker ended {len(lines)} spans, expected {count}")

    return read


def hexid(number: int, digits: int) -> str:
    return f"0x{number:0{digits}x}"


def test_the_run_span_is_a_child_of_the_send_span(client, exporter, worker_spans):
    result = client.send_task("e2e.add", (2, 3))
    assert result.get(timeout=30) == 5

    [send] = exporter.get_finished_spans()
    assert send.name == "send e2e.add"
    assert send.kind == trace.SpanKind.PRODUCER
    assert dict(send.attributes) == {
        "messaging.system": "kq",
        "messaging.destination.name": client.conf.task_default_queue,
        "messaging.message.id": result.id,
        "messaging.operation.type": "send",
        "kq.task.name": "e2e.add",
    }
    [run] = worker_spans(1)
    assert run["name"] == "run e2e.add"
    assert run["kind"] == "SpanKind.CONSUMER"
    assert run["context"]["trace_id"] == hexid(send.context.trace_id, 32)
    assert run["parent_id"] == hexid(send.context.span_id, 16)
    assert run["status"]["status_code"] == "UNSET"  # only errors set a status
    assert run["attributes"]["messaging.message.id"] == result.id
    assert run["attributes"]["kq.task.retries"] == 0
    assert run["attributes"]["kq.task.state"] == "SUCCESS"


def test_a_failed_task_has_an_error_span(client, exporter, worker_spans):
    result = client.send_task("e2e.fail", ("on purpose",))
    with pytest.raises(ValueError, match="on purpose"):
        result.get(timeout=30)
    [run] = worker_spans(1)
    assert run["status"]["status_code"] == "ERROR"
    assert run["attributes"]["kq.task.state"] == "FAILURE"
    [event] = run["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"


def test_a_chain_is_one_trace(client, exporter, worker_spans):
    steps = chain(
        Signature("e2e.add", (1, 2), app=client),
        Signature("e2e.add", (10,), app=client),
        Signature("e2e.add", (100,), app=client),
    )
    assert steps.apply_async().get(timeout=30) == 113

    [first_send] = exporter.get_finished_spans()
    spans = worker_spans(5)  # three runs, and the sends of steps two and three
    assert sorted(span["name"] for span in spans) == ["run e2e.add"] * 3 + ["send e2e.add"] * 2
    assert {span["context"]["trace_id"] for span in spans} == {hexid(first_send.context.trace_id, 32)}
    names = {span["context"]["span_id"]: span["name"] for span in spans}
    names[hexid(first_send.context.span_id, 16)] = first_send.name
    # Each run is a child of a send, each send in the worker a child of the run before it.
    for span in spans:
        expected = "send e2e.add" if span["name"].startswith("run") else "run e2e.add"
        assert names[span["parent_id"]] == expected


def test_a_retry_stays_in_the_trace(client, exporter, worker_spans):
    result = client.send_task("traced.flaky")
    assert result.get(timeout=30) == "ok"
    [send] = exporter.get_finished_spans()
    spans = worker_spans(3)  # the run that retried, the retry's send, the run that succeeded
    assert [(s["name"], s["attributes"].get("kq.task.state")) for s in spans] == [
        ("run traced.flaky", "RETRY"),
        ("send traced.flaky", None),
        ("run traced.flaky", "SUCCESS"),
    ]
    assert {span["context"]["trace_id"] for span in spans} == {hexid(send.context.trace_id, 32)}
    assert spans[1]["parent_id"] == spans[0]["context"]["span_id"]
    assert spans[2]["parent_id"] == spans[1]["context"]["span_id"]
    assert spans[2]["attributes"]["kq.task.retries"] == 1
