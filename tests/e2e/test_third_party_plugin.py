"""A plugin written and pip-installed by a third party works without any change to kq."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from kq.plugins import reload_plugins

pytestmark = pytest.mark.slow

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "kq-thirdparty-rot13"
version = "1.2.3"
dependencies = ["kq"]

[project.entry-points.kq]
rot13 = "kq_thirdparty_rot13"
"""

MODULE = '''\
"""A serializer plugin: JSON, rot13-encoded, under its own content type."""
import codecs
import json

from kq import hookimpl
from kq.serialization import SerializerSpec


def dumps(obj):
    return codecs.encode(json.dumps(obj), "rot13").encode()


def loads(data):
    return json.loads(codecs.decode(data.decode(), "rot13"))


@hookimpl
def kq_serializers():
    return [SerializerSpec(name="rot13", content_type="application/x-rot13-json",
                           dumps=dumps, loads=loads)]
'''


def pip(*args):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def installed_plugin(tmp_path):
    package = tmp_path / "kq-thirdparty-rot13"
    package.mkdir()
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "kq_thirdparty_rot13.py").write_text(textwrap.dedent(MODULE))
    pip("install", "--no-deps", str(package))
    try:
        yield
    finally:
        pip("uninstall", "-y", "kq-thirdparty-rot13")
        reload_plugins()


def test_installed_serializer_plugin_is_listed_and_used(installed_plugin, env, client, start_worker):
    listed = subprocess.run(
        [sys.executable, "-m", "kq", "plugins", "--json"], capture_output=True, text=True, check=True
    ).stdout
    plugin = next(p for p in json.loads(listed)["plugins"] if p["distribution"] == "kq-thirdparty-rot13")
    assert plugin["version"] == "1.2.3" and plugin["hooks"] == ["kq_serializers"]
    assert plugin["provides"] == {"serializers": ["rot13"]}

    reload_plugins()
    client.configure(task_serializer="rot13", accept_content=["rot13"])
    env.update(KQ_TASK_SERIALIZER="rot13", KQ_ACCEPT_CONTENT="rot13", KQ_RESULT_SERIALIZER="rot13")
    client.configure(result_serializer="rot13")
    sent = client.send_task("e2e.add", [19, 23])
    transport = client.new_transport()
    try:
        [raw] = transport.fetch(["celery"], 1, 5.0)
        assert raw.envelope.content_type == "application/x-rot13-json"
        assert b"19" in raw.envelope.body and b"[[" in raw.envelope.body  # rot13 keeps digits
        transport.reject(raw, requeue=True)
    finally:
        transport.close()
    start_worker("-P", "threads")
    assert sent.get(timeout=30) == 42
    assert os.environ.get("KQ_TASK_SERIALIZER") is None  # the test process env was not touched
