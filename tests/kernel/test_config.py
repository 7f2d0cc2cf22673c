"""Settings layers and validation."""

import types

import pytest

from kq import App
from kq.config import Settings
from kq.exceptions import ConfigurationError


def test_layers_in_order(monkeypatch):
    monkeypatch.setenv("KQ_TASK_DEFAULT_QUEUE", "from-env")
    monkeypatch.setenv("KQ_WORKER_CONCURRENCY", "3")
    app = App("t", broker="memory://", task_default_queue="from-code", worker_prefetch_multiplier=2)
    assert app.conf.task_default_queue == "from-env"  # environment beats code
    assert app.conf.worker_concurrency == 3
    assert app.conf.worker_prefetch_multiplier == 2  # code beats defaults
    app.override(task_default_queue="from-cli")  # command line beats environment
    assert app.conf.task_default_queue == "from-cli"
    assert app.conf.broker_url == "memory://"


def test_defaults_are_the_embedded_sqlite_file(monkeypatch):
    for name in ("KQ_BROKER_URL", "KQ_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    conf = App("t").conf
    assert conf.broker_url == conf.result_backend == "sqlite:///kq.sqlite3"
    assert conf.accept_content == ("json",)


def test_config_from_object_module_and_mapping():
    module = types.ModuleType("cfg")
    module.task_acks_late = True
    module._helper = "ignored"
    app = App("t")
    app.config_from_object(module)
    app.config_from_object({"result_expires": 5})
    assert app.conf.task_acks_late is True and app.conf.result_expires == 5


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"worker_concurrency": 0}, ["worker_concurrency", ">= 1"]),
        ({"broker_url": "nourl"}, ["broker_url", "scheme://"]),
        ({"task_acks_late": "yes"}, ["task_acks_late", "true or false"]),
        ({"accept_content": []}, ["accept_content"]),
        ({"task_serializer": "nosuch"}, ["task_serializer", "json", "pickle"]),
        ({"accept_content": ["json", "toml"]}, ["accept_content", "toml"]),
        ({"task_acks_lat": True}, ["task_acks_lat", "did you mean 'task_acks_late'"]),
    ],
)
def test_invalid_values_name_the_setting_and_what_is_allowed(settings, words):
    with pytest.raises(ConfigurationError) as info:
        App("t", **settings).conf  # noqa: B018
    for word in words:
        assert word in str(info.value)


def test_invalid_environment_value(monkeypatch):
    monkeypatch.setenv("KQ_TASK_ACKS_LATE", "perhaps")
    with pytest.raises(ConfigurationError, match="KQ_TASK_ACKS_LATE"):
        App("t").conf  # noqa: B018


def test_the_watchdog_is_on_by_default_and_the_environment_can_turn_it_off(monkeypatch):
    assert App("t").conf.worker_watchdog_timeout == 300
    monkeypatch.setenv("KQ_WORKER_WATCHDOG_TIMEOUT", "none")
    assert App("t").conf.worker_watchdog_timeout is None
    monkeypatch.setenv("KQ_WORKER_WATCHDOG_TIMEOUT", "0")
    with pytest.raises(ConfigurationError, match="worker_watchdog_timeout"):
        App("t").conf  # noqa: B018


def test_every_setting_is_documented():
    import pathlib

    docs = (pathlib.Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.names() if f"`{name}`" not in docs]
    assert missing == []
