"""Finding plugins and asking them what they provide.

Every plugin, kq's own built-ins included, is a module named by an entry point in the ``kq``
group. :func:`get_plugins` loads them once per process into a pluggy manager and builds one
registry per provider hook (transports by URL scheme, pools by name, ...). A name or scheme
claimed twice stops start-up with both distributions named; a name nobody claims produces an
error that lists what is installed and which package would provide it.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import attrs
import importlib_metadata
import pluggy

from . import hookspecs
from .backend import BackendSpec
from .codec import CompressionSpec, SignerSpec
from .exceptions import ConfigurationError, PluginError
from .pool import PoolSpec
from .serialization import Serializers, SerializerSpec
from .specs import CanvasPrimitiveSpec, ScheduleStoreSpec, ScheduleTypeSpec
from .transport import TransportSpec

log = logging.getLogger("kq.plugins")

ENTRY_POINT_GROUP = "kq"
DISABLE_ENV = "KQ_DISABLE_PLUGINS"

#: First-party packages that provide a scheme or pool name, for "install X" hints.
KNOWN_PACKAGES: Mapping[str, Mapping[str, str]] = {
    "transport": {
        "sqlite": "kq-sqlite",
        "memory": "kq-memory",
        "redis": "kq-redis",
        "rediss": "kq-redis",
        "redis+socket": "kq-redis",
        "amqp": "kq-amqp",
        "amqps": "kq-amqp",
        "pyamqp": "kq-amqp",
        "sqs": "kq-sqs",
        "gcpubsub": "kq-gcpubsub",
    },
    "result backend": {
        "sqlite": "kq-sqlite",
        "memory": "kq-memory",
        "redis": "kq-redis",
        "rediss": "kq-redis",
        "rpc": "kq-amqp",
        "rpc+amqp": "kq-amqp",
        "rpc+amqps": "kq-amqp",
        "rpc+pyamqp": "kq-amqp",
        "redis+socket": "kq-redis",
        "db+postgresql": "kq-sqlalchemy",
        "db+mysql": "kq-sqlalchemy",
        "db+mariadb": "kq-sqlalchemy",
        "db+postgresql+psycopg": "kq-sqlalchemy",
        "db+mysql+pymysql": "kq-sqlalchemy",
        "db+mariadb+pymysql": "kq-sqlalchemy",
        "file": "kq-filesystem",
        "memcached": "kq-memcached",
        "cache+memcached": "kq-memcached",
        "azureblockblob": "kq-azureblob",
        "gs": "kq-gcs",
    },
    "pool": {
        "solo": "kq-solo",
        "threads": "kq-threads",
        "prefork": "kq-prefork",
        "gevent": "kq-gevent",
        "eventlet": "kq-eventlet",
        "asyncio": "kq-asyncio",
    },
    "compression": {"zstd": "kq-zstd"},
    "message signer": {"x509": "kq-auth"},
}

S = TypeVar("S")


@attrs.frozen
class PluginInfo:
    """A loaded plugin, as ``kq plugins`` shows it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.distribution or self.name


@attrs.frozen
class Provided(Generic[S]):
    """A spec together with the plugin that provided it."""

    spec: S
    plugin: PluginInfo


def _spec_keys(spec: Any) -> tuple[str, ...]:
    return tuple(spec.schemes) if hasattr(spec, "schemes") else (spec.name,)


class Registry(Generic[S]):
    """The specs one provider hook returned, keyed by scheme or name."""

    def __init__(self, kind: str, provided: Iterable[Provided[S]]) -> None:
        self.kind = kind
        self._items: dict[str, Provided[S]] = {}
        for item in provided:
            for key in _spec_keys(item.spec):
                other = self._items.get(key)
                if other is not None:
                    raise PluginError(
                        f"two plugins provide the {kind} {key!r}: {other.plugin.label} and "
                        f"{item.plugin.label}; uninstall one or disable it with "
                        f"{DISABLE_ENV}={item.plugin.name}"
                    )
                self._items[key] = item

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, Provided[S]]]:
        return sorted(self._items.items())

    def get(self, key: str) -> S:
        """Return the spec for ``key`` or raise an error that says what to install."""
        found = self._items.get(key)
        if found is not None:
            return found.spec
        installed = ", ".join(f"{k} ({p.plugin.label})" for k, p in self.items()) or "none"
        package = KNOWN_PACKAGES.get(self.kind, {}).get(key)
        hint = (
            f"install it with: pip install {package}"
            if package
            else "no known kq package provides it; see `kq plugins`"
        )
        raise PluginError(f"no plugin provides the {self.kind} {key!r}; installed: {installed}; {hint}")


def url_scheme(url: str) -> str:
    """The scheme of a broker or backend URL (``redis`` in ``redis://host``)."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError(f"{url!r} is not a URL (expected scheme://...)")
    return scheme.lower()


class Plugins:
    """The loaded plugins of this process and the registries built from them."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.disabled = frozenset(d.strip() for d in disabled if d.strip())
        self.infos: dict[str, PluginInfo] = {}
        self.failures: dict[str, str] = {}
        self._registries: dict[str, Registry[Any]] | None = None
        self._has_impls: dict[str, bool] = {}
        #: Counts (un)registrations, so that callers caching a notifier know when to look again.
        self.generation = 0
        self._lock = threading.Lock()

    # -- loading --------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist is not None else None
            if ep.name in self.disabled or (dist_name and dist_name in self.disabled):
                log.info("kq: plugin %r disabled by %s", ep.name, DISABLE_ENV)
                continue
            if ep.name in self.infos:
                continue  # the same distribution seen twice on sys.path
            try:
                module = ep.load()
            except Exception as exc:
                self._fail(ep.name, dist_name, exc)
                continue
            self.register(module, ep.name, dist_name, dist.version if dist is not None else None)

    def register(
        self, plugin: object, name: str, distribution: str | None = None, version: str | None = None
    ) -> None:
        """Register one plugin object; one that does not validate is skipped with a log line."""
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(name, distribution, exc)
            return
        hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", type(plugin).__name__)
        self.infos[name] = PluginInfo(name, module, distribution, version, hooks)
        self._changed()

    def unregister(self, name: str) -> None:
        """Remove the plugin registered as ``name`` (nothing happens if there is none)."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        if self.infos.pop(name, None) is not None:
            self._changed()

    def _changed(self) -> None:
        self._registries = None
        self._has_impls.clear()
        self.generation += 1

    def _fail(self, name: str, distribution: str | None, exc: BaseException) -> None:
        where = f" from {distribution}" if distribution else ""
        self.failures[name] = f"{type(exc).__name__}: {exc}"
        log.error("kq: plugin %r%s failed to load and is skipped: %s", name, where, self.failures[name])

    # -- registries -----------------------------------------------------------------------

    def _collect(self, hook_name: str, kind: str) -> Registry[Any]:
        provided = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.infos[impl.plugin_name]
            for spec in impl.function() or ():
                provided.append(Provided(spec, info))
        return Registry(kind, provided)

    def _registry(self, key: str) -> Registry[Any]:
        with self._lock:
            if self._registries is None:
                self._registries = {
                    "transports": self._collect("kq_transports", "transport"),
                    "backends": self._collect("kq_result_backends", "result backend"),
                    "pools": self._collect("kq_pools", "pool"),
                    "serializers": self._collect("kq_serializers", "serializer"),
                    "compressions": self._collect("kq_compressions", "compression"),
                    "signers": self._collect("kq_message_signers", "message signer"),
                    "schedule_types": self._collect("kq_schedule_types", "schedule type"),
                    "schedule_stores": self._collect("kq_schedule_stores", "schedule store"),
                    "canvas": self._collect("kq_canvas_primitives", "canvas primitive"),
                }
            return self._registries[key]

    def check(self) -> None:
        """Build every registry now, so that a clash surfaces at start-up, not mid-run."""
        self._registry("transports")

    @property
    def transports(self) -> Registry[TransportSpec]:
        return self._registry("transports")

    @property
    def backends(self) -> Registry[BackendSpec]:
        return self._registry("backends")

    @property
    def pools(self) -> Registry[PoolSpec]:
        return self._registry("pools")

    @property
    def schedule_types(self) -> Registry[ScheduleTypeSpec]:
        return self._registry("schedule_types")

    @property
    def schedule_stores(self) -> Registry[ScheduleStoreSpec]:
        return self._registry("schedule_stores")

    @property
    def canvas_primitives(self) -> Registry[CanvasPrimitiveSpec]:
        return self._registry("canvas")

    @property
    def compressions(self) -> Registry[CompressionSpec]:
        return self._registry("compressions")

    @property
    def signers(self) -> Registry[SignerSpec]:
        return self._registry("signers")

    def serializers(self) -> Serializers:
        return Serializers(p.spec for _, p in self._registry("serializers").items())

    def serializer_registry(self) -> Registry[SerializerSpec]:
        return self._registry("serializers")

    def transport_for(self, url: str) -> TransportSpec:
        return self.transports.get(url_scheme(url))

    def backend_for(self, url: str) -> BackendSpec:
        return self.backends.get(url_scheme(url))

    # -- lifecycle hooks ------------------------------------------------------------------

    def notifier(self, hook_name: str) -> Callable[..., None] | None:
        """A function that calls ``hook_name`` on every plugin, logging (not raising) errors;
        ``None`` when no plugin implements it, so hot paths can skip the call entirely."""
        has = self._has_impls.get(hook_name)
        if has is None:
            has = self._has_impls[hook_name] = bool(getattr(self.pm.hook, hook_name).get_hookimpls())
        if not has:
            return None
        caller = getattr(self.pm.hook, hook_name)

        def notify(**kwargs: Any) -> None:
            try:
                caller(**kwargs)
            except Exception:
                log.exception("kq: a plugin's %s hook failed", hook_name)

        return notify

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin that implements it."""
        notify = self.notifier(hook_name)
        if notify is not None:
            notify(**kwargs)


_current: Plugins | None = None
_current_lock = threading.Lock()
_on_load: list[Callable[[Plugins], None]] = []


def on_load(callback: Callable[[Plugins], None]) -> None:
    """Call ``callback(plugins)`` with the plugins of this process, now if they are loaded and
    again each time they are (re)loaded: for kernel parts that register plugin objects at run
    time (:mod:`kq.signals`), which would otherwise be lost by :func:`reload_plugins`."""
    with _current_lock:
        _on_load.append(callback)
        current = _current
    if current is not None:
        callback(current)


def get_plugins() -> Plugins:
    """The plugins of this process, loaded from entry points on first use."""
    global _current
    with _current_lock:
        if _current is None:
            plugins = Plugins(os.environ.get(DISABLE_ENV, "").split(","))
            plugins.load_entry_points()
            for callback in _on_load:
                callback(plugins)
            _current = plugins
        return _current


def reload_plugins() -> Plugins:
    """Forget the loaded plugins and load them again (after installing one, say)."""
    global _current
    with _current_lock:
        _current = None
    importlib.invalidate_caches()  # see distributions installed since the last look
    return get_plugins()
