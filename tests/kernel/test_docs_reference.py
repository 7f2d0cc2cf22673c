"""The generated documentation references cover every setting and every command.

``docs/hooks.py`` writes ``reference/configuration.md`` and ``reference/cli.md`` at build time
(``nox -s docs`` runs ``mkdocs build --strict``). These tests call its generators directly, walk
the settings class and the click tree themselves, and check nothing is left out; they also keep
the hand-written guides (docs/configuration.md, docs/cli.md) from drifting from the code.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import attrs
import click
import pytest

from kq.cli import cli
from kq.config import Settings

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("kq_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def sections(markdown: str, level: str = "##") -> dict[str, str]:
    """``{heading: body}`` for the headings of one level whose text is a code span."""
    parts = re.split(rf"^{level} `([^`]+)`\s*$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def all_commands(group: click.Group) -> list[tuple[str, click.Command]]:
    """Every command under ``group`` with its full path, walked here independently of the hook."""
    found = []

    def walk(command: click.Command, path: str) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                if not sub.hidden:
                    walk(sub, f"{path} {name}")

    walk(group, "kq")
    return found


def test_every_setting_is_in_the_configuration_reference(hooks):
    text = hooks.configuration_reference()
    entries = sections(text)
    assert list(entries) == Settings.names()
    comments = hooks.setting_comments(Settings)
    for field in attrs.fields(Settings):
        body = entries[field.name]
        assert f"`KQ_{field.name.upper()}`" in body
        assert f"Type `{field.type}`" in body
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        assert f"default `{default!r}`" in body
        # Every setting is documented in the source (its `#:` comment), and that text is shown.
        assert comments[field.name], f"Settings.{field.name} has no #: comment in core/kq/config.py"
        assert comments[field.name].split()[0] in body
    # The summary table links to each entry.
    assert all(f"[`{name}`](#{name})" in text for name in Settings.names())


def test_setting_comments_are_read_from_the_source(hooks):
    comments = hooks.setting_comments(Settings)
    assert comments["broker_url"].startswith("Where tasks are sent and consumed.")
    # A comment spanning several lines is joined into one paragraph, in order.
    assert "decode. Anything else is rejected" in comments["accept_content"]


def test_every_command_and_option_is_in_the_cli_reference(hooks):
    text = hooks.cli_reference()
    entries = sections(text)
    commands = all_commands(hooks.kq_cli())
    assert set(entries) == {path for path, _ in commands}
    # The kernel's own commands are all there, subcommands of groups (kq dlq ...) included.
    assert {path for path, _ in all_commands(cli)} <= set(entries)
    assert {"kq worker", "kq beat", "kq dlq replay", "kq inspect"} <= set(entries)
    for path, command in commands:
        body = entries[path]
        assert f"{path} " in body.split("```text", 1)[1], f"{path}: no usage line"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert any(f"{opt}" in body for opt in param.opts), f"{path}: {param.opts} missing"
                if param.help:
                    first_word = param.help.split()[0].strip("`")
                    assert first_word.replace("_", "\\_") in body or first_word in body
            elif isinstance(param, click.Argument):
                assert f"`{param.human_readable_name}`" in body


def test_configuration_guide_matches_the_settings(hooks):
    """docs/configuration.md explains each setting at length: one section per setting, no more."""
    guide = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    assert set(sections(guide, "####")) == set(Settings.names())


def test_cli_guide_names_only_real_options_and_every_command(hooks):
    """docs/cli.md's examples and tables use options that exist, and cover each command."""
    guide = (ROOT / "docs" / "cli.md").read_text("utf-8")
    root = hooks.kq_cli()
    options = {
        opt
        for _, command in all_commands(root)
        for param in command.params
        for opt in (*param.opts, *param.secondary_opts)
    }
    options |= {"--help", "--version"}
    unknown = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", guide)) - options
    assert not unknown, f"docs/cli.md names options no command has: {sorted(unknown)}"
    headings = re.findall(r"^## `(kq [\w-]+)", guide, flags=re.M)
    missing = {f"kq {name}" for name in root.commands} - set(headings)
    assert not missing, f"docs/cli.md has no section for {sorted(missing)}"


def test_github_style_anchors(hooks):
    assert hooks.github_slug("kq beat --list") == "kq-beat---list"
    assert hooks.github_slug("8. Testing: contract suites and fixtures") == (
        "8-testing-contract-suites-and-fixtures"
    )
    assert hooks.github_slug("worker_metrics_port") == "worker_metrics_port"


def test_links_between_repository_files_become_site_links(hooks):
    pages = {"PLUGIN_GUIDE.md": "plugin-guide.md", "plugins/kq-redis/README.md": "packages/kq-redis.md"}
    guide = (
        "See [beat](docs/beat.md#kq-beat---list), [redis](plugins/kq-redis/README.md), "
        "[the spec](core/kq/hookspecs.py), [web](https://example.org/x.md), [here](#top), "
        "[gone](docs/no-such-page.md).\n```\n[in code](docs/beat.md)\n```\n"
    )
    assert hooks.rewrite_links(guide, "PLUGIN_GUIDE.md", "plugin-guide.md", pages) == (
        "See [beat](beat.md#kq-beat---list), [redis](packages/kq-redis.md), "
        "the spec, [web](https://example.org/x.md), [here](#top), "
        "[gone](no-such-page.md).\n```\n[in code](docs/beat.md)\n```\n"
    )
    readme = "[guide](../../PLUGIN_GUIDE.md#8-testing) and [dlq](../../docs/dead-letters.md)"
    assert hooks.rewrite_links(readme, "plugins/kq-redis/README.md", "packages/kq-redis.md", pages) == (
        "[guide](../plugin-guide.md#8-testing) and [dlq](../dead-letters.md)"
    )
    # Pages under docs/ keep their links; ones leaving docs/ are mapped the same way.
    page = "[w](workers.md#autoscale) [g](../PLUGIN_GUIDE.md)"
    assert hooks.rewrite_links(page, "docs/beat.md", "beat.md", pages) == (
        "[w](workers.md#autoscale) [g](plugin-guide.md)"
    )


def test_help_text_is_escaped_outside_code(hooks):
    assert hooks.escape_markdown("KQ_* vars and `KQ_*` <queue>.dlq [x]") == (
        "KQ\\_\\* vars and `KQ_*` &lt;queue>.dlq \\[x\\]"
    )
