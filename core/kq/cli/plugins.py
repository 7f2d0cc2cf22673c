"""``kq plugins``: what is installed, from which distribution, and what it provides."""

from __future__ import annotations

import json
from typing import Any

import click

from ..exceptions import PluginError
from ..plugins import PluginInfo, Plugins, Registry, get_plugins

BUILTIN_DISTRIBUTION = "kq"


def _provides(plugins: Plugins) -> dict[str, dict[str, list[str]]]:
    """For each plugin name: the keys it provides in each registry."""
    out: dict[str, dict[str, list[str]]] = {}
    registries: dict[str, Registry[Any]] = {
        "transports": plugins.transports,
        "result_backends": plugins.backends,
        "pools": plugins.pools,
        "serializers": plugins.serializer_registry(),
        "schedule_types": plugins.schedule_types,
        "schedule_stores": plugins.schedule_stores,
        "canvas_primitives": plugins.canvas_primitives,
    }
    for area, registry in registries.items():
        for key, provided in registry.items():
            out.setdefault(provided.plugin.name, {}).setdefault(area, []).append(key)
    return out


def _describe(info: PluginInfo, provides: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "module": info.module,
        "hooks": list(info.hooks),
        "provides": provides,
    }


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include kq's built-in plugin.")
@click.option("--hook", metavar="NAME", help="Only plugins implementing this hook, e.g. kq_pools.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(show_all: bool, hook: str | None, as_json: bool) -> None:
    """List the loaded plugins: distribution, version, hooks, and what each provides.

    Plugins are found through the `kq` entry-point group; set KQ_DISABLE_PLUGINS=name,... to
    skip some. Plugins that failed to load are listed last with the error.
    """
    plugins = get_plugins()
    clash: str | None
    try:
        provides = _provides(plugins)
    except PluginError as exc:  # still list what is installed, so the clash can be found
        provides, clash = {}, str(exc)
    else:
        clash = None
    rows = [
        _describe(info, provides.get(info.name, {}))
        for info in sorted(plugins.infos.values(), key=lambda i: i.name)
        if (show_all or info.distribution != BUILTIN_DISTRIBUTION) and (hook is None or hook in info.hooks)
    ]
    failures = [{"name": name, "error": error} for name, error in sorted(plugins.failures.items())]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failures, "clash": clash}, indent=2))
        return
    if not rows:
        click.echo("No plugins match." if hook else "No plugins installed (try --all).")
    for row in rows:
        click.echo(f"{row['distribution'] or row['name']} {row['version'] or ''}".rstrip())
        click.echo(f"  hooks: {', '.join(row['hooks'])}")
        for area, keys in row["provides"].items():
            click.echo(f"  {area}: {', '.join(keys)}")
    for failure in failures:
        click.echo(f"FAILED {failure['name']}: {failure['error']}", err=True)
    if clash:
        raise click.ClickException(clash)
