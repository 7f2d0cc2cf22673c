"""``kq plugin new``: scaffold a plugin package that already passes its area's contract suite.

The generated package has the one shape PLUGIN_GUIDE.md describes (a distribution with a ``kq``
entry point, ``src/`` layout, a README, ``tests/test_contract.py`` subclassing the area's
contract), so a third-party author starts from green tests instead of a blank page. The skeleton
of every kind works as generated; see :mod:`kq.cli.plugin_templates` for what each one is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

import attrs
import click

from ..exceptions import KQError
from ..plugins import Plugins, Registry, get_plugins
from . import plugin_templates as t


@attrs.frozen
class Kind:
    """What ``--kind`` generates: the hook, the implementation files and the contract test."""

    hook: str
    #: The key under which ``kq plugins --json`` lists what the plugin provides.
    area: str
    contract: str
    #: Ends the test class's name (``TestFooTransport``).
    suffix: str
    #: A one-line description, with ``$name`` in it.
    summary: str
    #: ``src/<module>/`` file name -> template.
    files: Mapping[str, str]
    #: The body of the test class: the contract's fixtures.
    fixtures: str
    #: README: what the skeleton is, how to use the plugin, what to change first.
    about: str
    usage: str
    next_steps: str
    test_requirements: tuple[str, ...] = ("pytest>=8",)
    test_note: str = ""


_TMP_PATH = '    @pytest.fixture\n    def {fixture}(self, tmp_path: Path) -> str:\n        return f"$name://{{tmp_path}}"\n'

KINDS: dict[str, Kind] = {
    "serializer": Kind(
        hook="kq_serializers",
        area="serializers",
        contract="SerializerContract",
        suffix="Serializer",
        summary="The $name serializer for kq.",
        files={"__init__.py": t.SERIALIZER_INIT},
        fixtures='    @pytest.fixture\n    def serializer_name(self) -> str:\n        return "$name"\n',
        about="The skeleton encodes JSON under its own name and content type, so it works as generated.",
        usage='```python\napp = App(\n    "proj",\n    task_serializer="$name",\n'
        '    result_serializer="$name",\n    accept_content=["json", "$name"],\n)\n```\n\n'
        "A worker decodes `$name` only when `accept_content` lists it.",
        next_steps="- Replace `dumps` and `loads` in `src/$module/__init__.py` with your format; "
        'set `content_encoding="binary"` if it is not text.\n'
        "- Decoding must stay safe on hostile bytes (raise, never return garbage; "
        "bound every announced length), or declare `safe=False`.",
        # The contract's worker tests run on kq's pytest fixtures: an SQLite broker, a threads pool.
        test_requirements=("pytest>=8", "kq-sqlite", "kq-threads"),
        test_note="\nThe contract runs a real worker on an SQLite file, hence `kq-sqlite` and "
        "`kq-threads` in the `test` extra.\n",
    ),
    "transport": Kind(
        hook="kq_transports",
        area="transports",
        contract="TransportContract",
        suffix="Transport",
        summary="The $name:// broker for kq.",
        files={"__init__.py": t.TRANSPORT_INIT, "transport.py": t.TRANSPORT_IMPL},
        fixtures='    @pytest.fixture\n    def transport_url(self) -> str:\n        return "$name://"\n',
        about="The skeleton keeps its queues inside one process, which passes the contract and "
        "shows what every method must do; it is a starting point, not a broker to deploy.",
        usage="```console\n$$ KQ_BROKER_URL=$name://your-broker kq worker -A proj.tasks:app\n```",
        next_steps="- Replace `_Broker` in `src/$module/transport.py` with your broker's client; "
        "raise `kq.exceptions.BrokerUnavailable` when it cannot be reached.\n"
        "- Declare the capabilities your broker has in `TRANSPORT_CAPABILITIES`; the "
        "contract then tests each one (a `visibility_timeout` transport also overrides "
        "the `visibility_timeout_options` fixture).\n"
        "- Point `transport_url` in `tests/test_contract.py` at a real server, with "
        "`kq.testing.servers.require(...)`.",
    ),
    "backend": Kind(
        hook="kq_result_backends",
        area="result_backends",
        contract="BackendContract",
        suffix="Backend",
        summary="The $name:// result backend for kq.",
        files={"__init__.py": t.BACKEND_INIT, "backend.py": t.BACKEND_IMPL},
        fixtures=_TMP_PATH.format(fixture="backend_url"),
        about="The skeleton keeps one file per result in the directory its URL names: it passes "
        "the contract and is shared by the processes of one machine.",
        usage='```python\napp = App("proj", result_backend="$name:///var/lib/proj-results")\n```',
        next_steps="- Replace the file reads and writes in `src/$module/backend.py` with your "
        "store's client; raise `kq.exceptions.BackendUnavailable` when it cannot be "
        "reached.\n"
        "- `incr`/`delete_counter` and `claim`/`release` raise `NotImplementedError` "
        "until you implement them and declare `counters` / `claims` in "
        "`BACKEND_CAPABILITIES`; the contract then tests them across processes.",
    ),
    "pool": Kind(
        hook="kq_pools",
        area="pools",
        contract="PoolContract",
        suffix="Pool",
        summary="The $name pool for kq.",
        files={"__init__.py": t.POOL_INIT, "pool.py": t.POOL_IMPL},
        fixtures='    @pytest.fixture\n    def pool_name(self) -> str:\n        return "$name"\n',
        about="The skeleton runs each job in a thread of its own, at most `concurrency` at once.",
        usage="```console\n$$ kq worker -A proj.tasks:app --pool $name --concurrency 8\n```",
        next_steps="- Replace the thread per job in `src/$module/pool.py` with your concurrency "
        "model.\n"
        "- Declare what it can do in `POOL_CAPABILITIES` (time limits, terminate, "
        "autoscale, processes ...); the contract then tests each one.",
    ),
    "schedule-store": Kind(
        hook="kq_schedule_stores",
        area="schedule_stores",
        contract="ScheduleStoreContract",
        suffix="ScheduleStore",
        summary="The $name:// schedule store for kq beat.",
        files={"__init__.py": t.STORE_INIT, "store.py": t.STORE_IMPL},
        fixtures=_TMP_PATH.format(fixture="schedule_store_url"),
        about="The skeleton keeps beat's lock and state in a JSON file per namespace in the "
        "directory its URL names, under an `fcntl` lock (POSIX, one machine).",
        usage='```python\napp = App("proj", beat_store="$name:///var/lib/proj-beat")\n```',
        next_steps="- Replace the locked JSON file in `src/$module/store.py` with your store, "
        "keeping each method one atomic step across processes and machines.\n"
        "- Accept your own `beat_store_options` in `__init__` (unknown ones must raise "
        "`ConfigurationError`).",
    ),
}

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def normalize_name(raw: str) -> str:
    """``Foo_Bar``, ``kq-foo-bar`` and ``kq_foo_bar`` all mean the plugin ``foo-bar``."""
    name = raw.strip().lower().replace("_", "-")
    if name.startswith("kq-"):
        name = name[3:]
    if not _NAME.fullmatch(name):
        raise click.BadParameter(
            f"{raw!r}: use lower-case letters, digits and single hyphens, starting with a letter "
            f"(it becomes the distribution kq-<name>, the module kq_<name>, and the URL scheme or "
            f"the name users type)",
            param_hint="NAME",
        )
    return name


#: The registry each kind's key (scheme or name) goes into.
_REGISTRIES: dict[str, Callable[[Plugins], Registry[Any]]] = {
    "serializer": lambda plugins: plugins.serializer_registry(),
    "transport": lambda plugins: plugins.transports,
    "backend": lambda plugins: plugins.backends,
    "pool": lambda plugins: plugins.pools,
    "schedule-store": lambda plugins: plugins.schedule_stores,
}


def already_provided(name: str, kind: str) -> str | None:
    """Why ``name`` would collide with an installed plugin, if it would: a sentence naming it."""
    try:
        plugins = get_plugins()
        provided = dict(_REGISTRIES[kind](plugins).items()).get(name)
    except KQError:  # plugins that clash already: nothing useful to add here
        return None
    if provided is not None:
        return (
            f"{provided.plugin.label} already provides the {kind} {name!r}: with both installed, "
            f"kq refuses to start and names the two"
        )
    if name in plugins.infos:
        return (
            f"{plugins.infos[name].label} already uses the entry-point name {name!r}: with both "
            f"installed, kq loads only one of them"
        )
    return None


def _kq_requirement() -> str:
    """``kq>=0.1,<0.2`` for the kq this runs on: plugins pin the minor versions they tested."""
    try:
        major, minor = (int(part) for part in metadata.version("kq").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return "kq"
    upper = f"{major + 1}.0" if major >= 1 else f"0.{minor + 1}"
    return f"kq>={major}.{minor},<{upper}"


def render(name: str, kind: str) -> dict[str, str]:
    """Every file of the package, as relative path -> text."""
    spec = KINDS[kind]
    module = "kq_" + name.replace("-", "_")
    values = {
        "name": name,
        "dist": f"kq-{name}",
        "module": module,
        "kind": kind,
        "cls": "".join(part.capitalize() for part in name.split("-")),
        "hook": spec.hook,
        "area": spec.area,
        "contract": spec.contract,
        "contract_suffix": spec.suffix,
        "kq_requirement": _kq_requirement(),
        "test_requirements": ", ".join(f'"{r}"' for r in spec.test_requirements),
    }

    def sub(text: str) -> str:
        return Template(text).substitute(values)

    values["summary"] = sub(spec.summary)
    for field in ("fixtures", "about", "usage", "next_steps", "test_note"):
        values[field] = sub(getattr(spec, field))
    values["fixtures"] = values["fixtures"].rstrip("\n")
    values["test_imports"] = "from pathlib import Path\n\n" if "tmp_path" in spec.fixtures else ""
    files = {
        "pyproject.toml": sub(t.PYPROJECT),
        "README.md": sub(t.README),
        ".gitignore": t.GITIGNORE,
        "tests/test_contract.py": sub(t.TEST_CONTRACT),
    }
    for filename, template in spec.files.items():
        files[f"src/{module}/{filename}"] = sub(template)
    return files


def create(name: str, kind: str, directory: Path) -> Path:
    """Write the package for plugin ``name`` into ``directory/kq-<name>``; return that path.

    Refuses to touch a path that exists: a scaffold never overwrites someone's work.
    """
    name = normalize_name(name)
    target = directory / f"kq-{name}"
    if target.exists():
        raise click.ClickException(
            f"{target} already exists; choose another name or --dir (kq plugin new never overwrites files)"
        )
    files = render(name, kind)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


@click.group("plugin")
def plugin_group() -> None:
    """Write kq plugins. (`kq plugins`, plural, lists the installed ones.)"""


@plugin_group.command("new")
@click.argument("name")
@click.option(
    "--kind",
    "-k",
    required=True,
    type=click.Choice(sorted(KINDS)),
    help="What the plugin provides: a broker (transport), a result backend, a worker "
    "pool, a serializer, or a store for beat's state (schedule-store).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Where to create the kq-NAME directory.",
)
def plugin_new(name: str, kind: str, directory: Path) -> None:
    """Create kq-NAME/, a plugin package that already passes its area's contract suite.

    NAME becomes the distribution kq-NAME, the import package kq_NAME, the entry-point name, and
    the URL scheme (transport, backend, schedule-store) or the name users pick (serializer,
    pool). The package holds pyproject.toml with the `kq` entry point, src/kq_NAME/ with the
    hook implementation and a working skeleton marked with TODOs, README.md, and
    tests/test_contract.py subclassing the kind's contract from kq.testing.contracts.

    \b
    Example:
      kq plugin new cbor --kind serializer
      pip install -e './kq-cbor[test]' && pytest kq-cbor/tests && kq plugins

    An existing directory is never overwritten. See PLUGIN_GUIDE.md, "Start from a scaffold".
    """
    target = create(name, kind, directory)
    spec = KINDS[kind]
    steps = [
        (f"pip install -e '{target}[test]'", "the package, and what its tests need"),
        (f"pytest {target / 'tests'}", f"the {spec.contract}: passes as generated"),
        ("kq plugins", f"lists {target.name}"),
    ]
    width = max(len(command) for command, _ in steps)
    click.echo(f"Created {target}, a {kind} plugin (hook {spec.hook}). Next:")
    for command, why in steps:
        click.echo(f"  {command.ljust(width)}  # {why}")
    click.echo(f"Then replace the skeleton: the TODOs under {target / 'src'}, and its README.md.")
    name = normalize_name(name)
    clash = already_provided(name, kind)
    if clash is not None:
        click.echo(f"Note: {clash}. Rename it unless it is meant to replace that one.", err=True)
