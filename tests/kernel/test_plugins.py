"""The plugin manager: registration, clashes, broken plugins, and the errors users see."""

import logging
import types

import pytest

from kq import hookimpl
from kq.exceptions import PluginError
from kq.plugins import Plugins, get_plugins
from kq.pool import PoolSpec
from kq.serialization import SerializerSpec
from kq.transport import TransportSpec


def plugin(name, **hooks):
    """A plugin module made in the test, exactly as a third-party module would be."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def transports(*schemes):
    def kq_transports():
        return [TransportSpec(schemes=schemes, factory=lambda url, options: None)]

    return kq_transports


def test_builtins_come_through_the_entry_point():
    plugins = get_plugins()
    info = plugins.infos["builtins"]
    assert info.distribution == "kq"
    assert info.hooks == (
        "kq_app_configure",
        "kq_canvas_primitives",
        "kq_compressions",
        "kq_schedule_types",
        "kq_serializers",
    )
    assert plugins.serializers().names == ["json", "pickle"] or "json" in plugins.serializers().names


def test_two_plugins_claiming_one_scheme_fail_naming_both():
    plugins = Plugins()
    plugins.register(plugin("a", kq_transports=transports("x", "y")), "a", "kq-a", "1.0")
    plugins.register(plugin("b", kq_transports=transports("y")), "b", "kq-b", "2.0")
    with pytest.raises(PluginError) as info:
        plugins.check()
    message = str(info.value)
    assert "'y'" in message and "kq-a" in message and "kq-b" in message
    assert "KQ_DISABLE_PLUGINS=b" in message


def test_two_plugins_claiming_one_pool_name():
    def pools():
        return [PoolSpec(name="same", factory=lambda ctx: None)]

    plugins = Plugins()
    plugins.register(plugin("p1", kq_pools=pools), "p1", "kq-p1")
    plugins.register(plugin("p2", kq_pools=pools), "p2", "kq-p2")
    with pytest.raises(PluginError, match="kq-p1 and kq-p2"):
        plugins.pools  # noqa: B018


def test_unknown_scheme_names_the_installed_ones_and_the_package():
    plugins = Plugins()
    plugins.register(plugin("s", kq_transports=transports("sqlite")), "s", "kq-sqlite")
    with pytest.raises(PluginError) as info:
        plugins.transport_for("redis://localhost:6379/0")
    message = str(info.value)
    assert "'redis'" in message and "sqlite (kq-sqlite)" in message
    assert "pip install kq-redis" in message
    with pytest.raises(PluginError, match="no known kq package"):
        plugins.transport_for("nosuch://x")


def test_unknown_pool_names_installed_pools():
    def pools():
        return [PoolSpec(name="mine", factory=lambda ctx: None)]

    plugins = Plugins()
    plugins.register(plugin("mine", kq_pools=pools), "mine", "kq-mine")
    with pytest.raises(PluginError) as info:
        plugins.pools.get("gevent")
    assert "mine (kq-mine)" in str(info.value) and "pip install kq-gevent" in str(info.value)


def test_a_plugin_with_an_unknown_hook_is_skipped_with_a_log_line(caplog):
    plugins = Plugins()

    def kq_no_such_hook():
        return []

    with caplog.at_level(logging.ERROR, logger="kq.plugins"):
        plugins.register(plugin("bad", kq_no_such_hook=kq_no_such_hook), "bad", "kq-bad")
    assert "bad" not in plugins.infos and "bad" in plugins.failures
    assert "kq-bad" in caplog.text and "failed to load" in caplog.text
    # The manager still works for everything else.
    plugins.register(plugin("good", kq_transports=transports("good")), "good")
    assert "good" in plugins.transports


def test_a_broken_provider_does_not_break_lifecycle_hooks(caplog):
    plugins = Plugins()
    calls = []

    def kq_worker_start(worker):
        raise RuntimeError("plugin bug")

    def kq_worker_stop(worker):
        calls.append(worker)

    plugins.register(plugin("noisy", kq_worker_start=kq_worker_start, kq_worker_stop=kq_worker_stop), "noisy")
    with caplog.at_level(logging.ERROR):
        plugins.notify("kq_worker_start", worker="w")
    assert "plugin bug" in caplog.text
    plugins.notify("kq_worker_stop", worker="w")
    assert calls == ["w"]
    assert plugins.notifier("kq_task_prerun") is None  # nobody implements it: no call at all


def test_disabled_plugins_are_not_loaded():
    plugins = Plugins(disabled=["builtins"])
    plugins.load_entry_points()
    assert "builtins" not in plugins.infos
    assert "json" not in plugins.serializer_registry()


def test_serializer_names_are_unique():
    def sers():
        return [SerializerSpec(name="json", content_type="application/x-other", dumps=bytes, loads=bytes)]

    plugins = Plugins()
    plugins.load_entry_points()
    plugins.register(plugin("dup", kq_serializers=sers), "dup", "kq-dup")
    with pytest.raises(PluginError, match="serializer 'json'"):
        plugins.serializers()


def test_two_serializers_claiming_one_content_type():
    def sers():
        return [SerializerSpec(name="other-json", content_type="application/json", dumps=bytes, loads=bytes)]

    plugins = Plugins()
    plugins.load_entry_points()
    plugins.register(plugin("dup", kq_serializers=sers), "dup", "kq-dup")
    with pytest.raises(PluginError, match="'json' and 'other-json'"):
        plugins.serializers()
