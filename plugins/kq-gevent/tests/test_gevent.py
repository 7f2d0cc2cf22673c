"""What every process with kq-gevent installed relies on: the plugin costs nothing until the
pool is used, patches nothing by itself, and refuses to run where it could not work."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kq.exceptions import ConfigurationError
from kq.plugins import get_plugins
from kq.pool import PoolContext
from kq.specs import lazy
from kq.testing.contracts.pool import Probe
from kq_gevent import CAPABILITIES, DEFAULT_CONCURRENCY, patch


def test_spec_patches_before_the_app_and_declares_limits() -> None:
    spec = get_plugins().pools.get("gevent")
    assert spec.setup is patch
    assert spec.factory == lazy("kq_gevent.pool:GeventPool")
    assert spec.capabilities == CAPABILITIES
    assert CAPABILITIES.soft_time_limit and CAPABILITIES.hard_time_limit and CAPABILITIES.autoscale
    assert not CAPABILITIES.processes
    assert spec.default_concurrency == DEFAULT_CONCURRENCY


def test_loading_plugins_neither_imports_nor_patches() -> None:
    script = textwrap.dedent(
        """
        import socket, sys
        from kq.plugins import get_plugins
        assert "gevent" in get_plugins().pools
        assert "gevent" not in sys.modules, "kq_gevent imported gevent on load"
        assert socket.socket.__module__ == "socket", socket.socket
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_setup_patches_the_process() -> None:
    script = (
        "import kq_gevent, socket, time; kq_gevent.patch(); "
        "print(socket.socket.__module__, time.sleep.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gevent._socket3", "gevent.hub"]


def test_an_unpatched_process_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigurationError, match="-P gevent") as info:
        get_plugins().pools.get("gevent").factory(PoolContext(concurrency=4, runner=Probe(4)))
    assert "worker_pool" in str(info.value) and "socket" in str(info.value)


def test_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="worker_concurrency"):
        get_plugins().pools.get("gevent").factory(PoolContext(concurrency=0, runner=Probe(1)))
