"""A real `kq worker` process with the SQLite broker keeping its results in a real memcached
(kq-memcached) started for the test: 1,000 tasks, every value read back by a client."""

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from kq import App
from kq.testing.servers import free_port, spawn

pytestmark = pytest.mark.slow

TOTAL = 1_000


@pytest.fixture
def memcached_url() -> Iterator[str]:
    """A memcached of the test's own (Debian's package; .ci/run installs it)."""
    port = free_port()
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    with spawn("memcached", argv, port) as (host, port):
        yield f"memcached://{host}:{port}/"


@pytest.fixture
def prefix() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def env(env: dict[str, str], memcached_url: str, prefix: str) -> dict[str, str]:
    return {
        **env,
        "KQ_RESULT_BACKEND": memcached_url,
        "KQ_RESULT_BACKEND_OPTIONS": json.dumps({"key_prefix": prefix}),
    }


@pytest.fixture
def client(db_url: str, memcached_url: str, prefix: str) -> Iterator[App]:
    app = App("client", broker=db_url, backend=memcached_url, result_backend_options={"key_prefix": prefix})
    yield app
    app.close()


def test_1000_tasks_with_results_in_memcached(client, start_worker, ran):
    sent = [client.send_task("e2e.double", [n]) for n in range(TOTAL)]
    failed = client.send_task("e2e.fail", ["broken on purpose"])
    worker = start_worker("-P", "threads", "-c", "8")
    assert [result.get(timeout=120) for result in sent] == [2 * n for n in range(TOTAL)]
    with pytest.raises(ValueError, match="broken on purpose"):
        failed.get(timeout=60)
    assert worker.stop() == 0
    assert sorted(ran("ran")) == sorted(result.id for result in sent)
    # read back in one go, as a chord body reads its header
    assert [r.state for r in client.backend.get_many([r.id for r in sent])] == ["SUCCESS"] * TOTAL
