"""What every process with kq-eventlet installed relies on. Anything that imports eventlet
runs in a subprocess: importing it warns (eventlet is deprecated) and loads dnspython."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from kq.plugins import get_plugins
from kq.specs import lazy
from kq_eventlet import CAPABILITIES, DEFAULT_CONCURRENCY, patch


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_spec_greens_before_the_app_and_declares_what_it_enforces() -> None:
    spec = get_plugins().pools.get("eventlet")
    assert (spec.setup, spec.factory) == (patch, lazy("kq_eventlet.pool:EventletPool"))
    assert spec.capabilities == CAPABILITIES and spec.default_concurrency == DEFAULT_CONCURRENCY
    assert CAPABILITIES.soft_time_limit and CAPABILITIES.autoscale
    assert not CAPABILITIES.hard_time_limit, "eventlet cannot stop a task that computes"


def test_loading_plugins_does_not_import_eventlet() -> None:
    run("""
        import sys
        from kq.plugins import get_plugins
        assert "eventlet" in get_plugins().pools
        assert "eventlet" not in sys.modules, "kq_eventlet imported eventlet on load"
        """)


def test_setup_greens_the_process() -> None:
    out = run("""
        import kq_eventlet
        kq_eventlet.patch()
        import eventlet.patcher, queue
        print([eventlet.patcher.is_monkey_patched(m) for m in ("socket", "time", "thread")],
              queue.SimpleQueue.__name__)
        """)
    assert out.split() == ["[True,", "True,", "True]", "_PySimpleQueue"]


def test_an_ungreened_process_or_no_concurrency_is_refused() -> None:
    out = run("""
        from kq.exceptions import ConfigurationError
        from kq.plugins import get_plugins
        from kq.pool import PoolContext
        factory = get_plugins().pools.get("eventlet").factory
        for concurrency in (4, 0):
            try:
                factory(PoolContext(concurrency=concurrency, runner=print))
            except ConfigurationError as exc:
                print(exc)
        """)
    refused, zero = out.splitlines()
    assert "worker_pool" in refused and "-P eventlet" in refused and "socket" in refused
    assert "worker_concurrency must be at least 1" in zero
