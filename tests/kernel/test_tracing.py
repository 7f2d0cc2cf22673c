"""kq's tracing plugin when OpenTelemetry is not set up: no span hook runs and messages go out
without trace headers; without the API package the plugin implements no hook at all. Spans with
a configured SDK and a real worker are in tests/e2e/test_tracing.py."""

import subprocess
import sys

from opentelemetry import trace

from kq import App, hookimpl, tracing
from kq.plugins import get_plugins


class Recorder:
    """Keeps every envelope handed to ``kq_before_publish``; it is published unchanged after."""

    def __init__(self) -> None:
        self.envelopes = []

    @hookimpl
    def kq_before_publish(self, envelope):
        self.envelopes.append(envelope)


def test_without_a_tracer_provider_no_hook_runs_and_no_header_is_added():
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    recorder = Recorder()
    get_plugins().register(recorder, "tracing-test-recorder")
    app = App("untraced", broker="memory://", backend=None)
    try:
        app.send_task("untraced.task", (1,))
        # The API is installed, so the switch is there; the span hooks were not registered.
        assert get_plugins().infos["tracing"].hooks == ("kq_app_configure", "kq_worker_start")
        assert tracing.SPANS not in get_plugins().infos
        # (other installed plugins, kq-django for one, may implement the task hooks themselves)
        prerun = get_plugins().pm.hook.kq_task_prerun.get_hookimpls()
        assert not [impl for impl in prerun if impl.plugin_name.startswith("tracing")]
    finally:
        get_plugins().unregister("tracing-test-recorder")
        app.close()
    [envelope] = recorder.envelopes
    assert not {"traceparent", "tracestate", "baggage"} & set(envelope.headers)


def test_without_the_api_package_the_plugin_has_no_hooks():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from kq.plugins import get_plugins\n"
        "print(get_plugins().infos['tracing'].hooks)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "()"


def test_an_app_that_never_sets_opentelemetry_up_does_not_import_it():
    code = (
        "import sys, kq\n"
        "app = kq.App('quiet', broker='memory://', backend=None)\n"
        "app.send_task('quiet.task')\n"
        "print('opentelemetry.trace' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
