"""kq.testing.servers.spawn: the helper plugin tests start their emulators with."""

from __future__ import annotations

import sys

import pytest

from kq.testing import servers


def test_spawn_waits_for_the_port_and_stops_the_server() -> None:
    port = servers.free_port()
    with servers.spawn(
        "http.server", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], port
    ) as (host, bound):
        assert (host, bound) == ("127.0.0.1", port)
        assert servers.reachable(host, port)
    assert not servers.reachable("127.0.0.1", port, timeout=0.5)


def test_a_server_that_exits_fails_with_its_output() -> None:
    port = servers.free_port()
    with pytest.raises(pytest.fail.Exception, match="boom"):
        with servers.spawn("broken", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], port):
            pass


def test_a_missing_program_skips_off_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        with servers.spawn("nothing", ["kq-no-such-program"], servers.free_port()):
            pass


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it"):
        with servers.spawn("nothing", ["kq-no-such-program"], servers.free_port()):
            pass
