"""MkDocs hooks for kq's documentation site (``mkdocs.yml`` names this file under ``hooks:``).

At build time they:

- generate ``reference/configuration.md`` from :class:`kq.config.Settings` (every field: name, type,
  default, environment variable, and the ``#:`` comment above it) and ``reference/cli.md`` by
  walking the ``kq`` click command tree (every command and subcommand, plugin ones included). These
  pages are never written to disk or committed, so they cannot go stale: they are rebuilt from the
  code on every build;
- add Markdown files that live outside ``docs/`` (``PLUGIN_GUIDE.md`` and each plugin's README) as
  pages, without copying them into git, and rewrite links between repository files into links
  between site pages; a link to a repository file that is not a page is turned into plain text;
- make heading anchors the same as GitHub's, so ``page.md#some-heading`` works both on GitHub and
  on the site (``--strict`` with ``validation.anchors: warn`` checks every one).

The generator functions (:func:`configuration_reference`, :func:`cli_reference`) need only kq,
attrs and click, so tests import this module without MkDocs installed.
"""

from __future__ import annotations

import ast
import copy
import inspect
import pathlib
import posixpath
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import attrs
import click

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Pages generated from the code, by their path under ``docs/``.
CONFIGURATION_REFERENCE = "reference/configuration.md"
CLI_REFERENCE = "reference/cli.md"
#: The hand-written guides the references link to, for the narrative around each entry.
CONFIGURATION_GUIDE = "configuration.md"
CLI_GUIDE = "cli.md"


# --------------------------------------------------------------------------------------------
# Markdown helpers


def github_slug(value: str, separator: str = "-") -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen.

    Python-Markdown's default collapses runs of spaces and hyphens, so ``kq beat --list`` would be
    ``kq-beat-list`` on the site but ``kq-beat---list`` on GitHub; using GitHub's rule keeps one
    set of links working in both places.
    """
    return re.sub(r"[^\w\- ]", "", value.strip().lower()).replace(" ", separator)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def escape_markdown(text: str) -> str:
    """Escape characters Markdown would read as markup (``*``, ``_``, ``|``, ``[``; ``<`` as an
    entity) outside code spans, for text written for a terminal (click help), not for Markdown."""

    def plain(part: str) -> str:
        return re.sub(r"([*_|\[\]\\])", r"\\\1", part).replace("<", "&lt;")

    out, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        out += [plain(text[last : match.start()]), match.group(0)]
        last = match.end()
    out.append(plain(text[last:]))
    return "".join(out)


def _link_docs_mentions(text: str, base: str) -> str:
    """Turn mentions of ``docs/page.md`` in docstrings into links relative to ``base``."""

    def link(match: re.Match[str]) -> str:
        target = posixpath.relpath(match.group(1), posixpath.dirname(base) or ".")
        return f"[{match.group(1)}]({target}{match.group(2) or ''})"

    return re.sub(r"docs/([\w./-]+\.md)(#[\w-]+)?", link, text)


def guide_anchors(page: str) -> set[str]:
    """The anchors of a hand-written page's headings (GitHub style), to link only to real ones."""
    path = DOCS / page
    if not path.exists():
        return set()
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _without_fences(path.read_text("utf-8")), re.M)
    return {github_slug(h.replace("`", "")) for h in headings}


def _without_fences(markdown: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.M | re.S)


# --------------------------------------------------------------------------------------------
# Configuration reference


def setting_comments(cls: type) -> dict[str, str]:
    """Each attrs field's ``#:`` comment (the lines right above it), joined into one paragraph.

    The comments are the settings' documentation in the source; they are not kept at run time,
    so they are read from the class's source code.
    """
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    docs: dict[str, str] = {}
    for node in tree.body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                comment.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            docs[node.target.id] = " ".join(comment)
    return docs


def _default(field: attrs.Attribute) -> Any:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()  # type: ignore[attr-defined]
    return default


def configuration_reference() -> str:
    """``reference/configuration.md``: every setting of :class:`kq.config.Settings`."""
    from kq.config import ENV_PREFIX, Settings

    comments = setting_comments(Settings)
    anchors = guide_anchors(CONFIGURATION_GUIDE)
    fields = attrs.fields(Settings)
    out = [
        "# Configuration reference",
        "",
        "Generated from `kq.config.Settings` when the documentation is built: every setting kq's",
        "kernel reads, with its type, default, environment variable and description. Where a",
        "setting comes from (code, `KQ_*` variables, flags), how environment values are parsed and",
        f"how settings are validated: the [configuration guide](../{CONFIGURATION_GUIDE}), which also",
        "explains each setting at length.",
        "",
        "| setting | default | environment |",
        "|---|---|---|",
    ]
    out += [
        f"| [`{f.name}`](#{github_slug(f.name)}) | `{_default(f)!r}` | `{ENV_PREFIX}{f.name.upper()}` |"
        for f in fields
    ]
    for field in fields:
        text = _link_docs_mentions(comments.get(field.name, ""), CONFIGURATION_REFERENCE)
        out += [
            "",
            f"## `{field.name}`",
            "",
            f"Type `{field.type}`, default `{_default(field)!r}`, environment "
            f"`{ENV_PREFIX}{field.name.upper()}`.",
            "",
        ]
        if text:
            out.append(text)
        if github_slug(field.name) in anchors:
            out += ["", f"More: [configuration guide](../{CONFIGURATION_GUIDE}#{github_slug(field.name)})."]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# CLI reference


def kq_cli() -> click.Group:
    """The ``kq`` group as ``kq`` runs it: the kernel's commands plus those plugins add through
    the ``kq_cli_commands`` hook, on a copy so the imported group is left as it was."""
    from kq.cli import cli
    from kq.plugins import get_plugins

    group = copy.copy(cli)
    group.commands = dict(cli.commands)
    get_plugins().pm.hook.kq_cli_commands(cli=group)
    return group


def root_context(root: click.Group) -> click.Context:
    """The context ``kq`` runs in, with the group's ``context_settings`` (``-h`` for help)."""
    return click.Context(root, info_name="kq", **root.context_settings)


def walk_commands(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    """Every command of the tree under ``command`` with its context (whose ``command_path`` is
    ``kq dlq list``), depth first, in the order the groups list them."""
    yield command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk_commands(sub, click.Context(sub, info_name=name, parent=ctx))


def command_paths(root: click.Group | None = None) -> list[str]:
    """``["kq", "kq worker", ..., "kq dlq list", ...]``: every command the reference covers."""
    root = root or kq_cli()
    return [ctx.command_path for _, ctx in walk_commands(root, root_context(root))]


def _help_markdown(text: str) -> list[str]:
    """Click help text as Markdown: paragraphs kept, ``\\b`` blocks (not rewrapped by click)
    as preformatted text."""
    text = inspect.cleandoc(text.split("\f", 1)[0])
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.startswith("\b"):
            body = paragraph[1:].strip("\n")
            out += ["```text", body, "```", ""]
        else:
            out += [escape_markdown(" ".join(line.strip() for line in paragraph.splitlines())), ""]
    return out


def cli_reference() -> str:
    """``reference/cli.md``: every command, its usage, help and options, from click itself."""
    root = kq_cli()
    anchors = guide_anchors(CLI_GUIDE)
    out = [
        "# Command-line reference",
        "",
        "Generated from the `kq` command's click definitions when the documentation is built: every",
        "command and subcommand with its usage, help and options, as `kq COMMAND --help` prints",
        "them. Every command also takes `-h, --help`. Examples and the behaviour around each",
        f"command: the [command-line guide](../{CLI_GUIDE}).",
        "",
    ]
    for command, ctx in walk_commands(root, root_context(root)):
        path = ctx.command_path
        out += [f"## `{path}`", "", "```text", command.get_usage(ctx).removeprefix("Usage: "), "```", ""]
        if command.deprecated:
            out += ["**Deprecated.**", ""]
        out += _help_markdown(command.help or command.short_help or "")
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            out += ["Arguments:", ""]
            for arg in arguments:
                notes = ["required" if arg.required else "optional"]
                if arg.nargs == -1:
                    notes.append("any number")
                out.append(f"- `{arg.human_readable_name}` ({', '.join(notes)})")
            out.append("")
        options = []
        for param in command.get_params(ctx):
            if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            names, help_text = record
            if param.envvar and "env var:" not in help_text:
                envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
                help_text = f"{help_text} [env var: {', '.join(envvars)}]".strip()
            options.append(f"- `{names}`: {escape_markdown(help_text) if help_text else ''}".rstrip(": "))
        if options:
            out += ["Options:", "", *options, ""]
        if isinstance(command, click.Group):
            subs = [(n, command.get_command(ctx, n)) for n in command.list_commands(ctx)]
            out += ["Commands:", ""]
            out += [
                f"- [`{path} {n}`](#{github_slug(f'{path} {n}')}): "
                f"{escape_markdown(c.get_short_help_str(limit=100))}"
                for n, c in subs
                if c is not None and not c.hidden
            ]
            out.append("")
        guide = github_slug(path)
        if guide in anchors:
            out += [f"More: [command-line guide](../{CLI_GUIDE}#{guide}).", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Repository Markdown outside docs/


def external_pages() -> dict[str, str]:
    """Markdown files outside ``docs/`` shown as pages: repository path -> page path."""
    pages = {"PLUGIN_GUIDE.md": "plugin-guide.md"}
    for readme in sorted(ROOT.glob("plugins/*/README.md")):
        pages[readme.relative_to(ROOT).as_posix()] = f"packages/{readme.parent.name}.md"
    return pages


_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")


def rewrite_links(markdown: str, repo_path: str, page_path: str, pages: dict[str, str]) -> str:
    """Rewrite relative links of the file at ``repo_path`` (shown as ``page_path`` under docs/)
    so they resolve on the site: to files under docs/, to the ``pages`` taken from elsewhere in
    the repository, or, for other repository files, to plain text. Links to files that do not
    exist are left alone for MkDocs to report."""
    base = posixpath.dirname(page_path) or "."

    def fix(match: re.Match[str]) -> str:
        bang, text, target, title = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        anchor = f"#{anchor}" if anchor else ""
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), path))
        if resolved.startswith("docs/"):
            new = posixpath.relpath(resolved[len("docs/") :], base)
        elif resolved in pages:
            new = posixpath.relpath(pages[resolved], base)
        elif (ROOT / resolved).exists():
            return text if not bang else f"({text})"  # not part of the site
        else:
            return match.group(0)
        return f"{bang}[{text}]({new}{anchor}{title})"

    parts = re.split(r"(^(?:```|~~~).*?^(?:```|~~~)[^\n]*$)", markdown, flags=re.M | re.S)
    return "".join(p if i % 2 else _LINK.sub(fix, p) for i, p in enumerate(parts))


# --------------------------------------------------------------------------------------------
# MkDocs event handlers (https://www.mkdocs.org/user-guide/configuration/#hooks)


#: Folders of docs/ whose pages are listed under Plugins in the nav by themselves (titled by their
#: first heading), so adding a page there needs no edit of mkdocs.yml.
PLUGIN_PAGE_FOLDERS = {"brokers": "Brokers", "backends": "Result backends"}


def on_config(config: Any) -> Any:
    """GitHub-style anchors; each plugin's README, and the pages of :data:`PLUGIN_PAGE_FOLDERS`,
    added to the nav under Plugins."""
    config.mdx_configs.setdefault("toc", {})["slugify"] = github_slug
    sections = []
    for folder, title in PLUGIN_PAGE_FOLDERS.items():
        folder_pages = sorted(p.relative_to(DOCS).as_posix() for p in (DOCS / folder).glob("*.md"))
        if folder_pages:
            sections.append({title: folder_pages})
    packages = [
        {path.split("/")[1]: page} for path, page in external_pages().items() if page.startswith("packages/")
    ]
    sections.append({"Packages": packages})
    for item in config.nav or []:
        if isinstance(item, dict) and isinstance(item.get("Plugins"), list):
            item["Plugins"].extend(sections)
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated reference pages and the pages taken from outside docs/."""
    from mkdocs.structure.files import File

    generated = {CONFIGURATION_REFERENCE: configuration_reference(), CLI_REFERENCE: cli_reference()}
    for repo_path, page in external_pages().items():
        generated[page] = (ROOT / repo_path).read_text("utf-8")
    for page, content in generated.items():
        if files.get_file_from_path(page) is not None:
            raise RuntimeError(f"docs/{page} exists but is generated at build time: delete it")
        files.append(File.generated(config, page, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Point links between repository files at the matching site pages."""
    pages = external_pages()
    origin = {page_path: repo_path for repo_path, page_path in pages.items()}
    src = page.file.src_uri
    return rewrite_links(markdown, origin.get(src, f"docs/{src}"), src, pages)
