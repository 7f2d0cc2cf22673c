"""The kernel's import graph has no cycles, and plugins import only kq's public API."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).parents[2]
CORE = ROOT / "core" / "kq"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: pathlib.Path, name: str, modules: set[str]) -> set[str]:
    """Every kq module this file imports, TYPE_CHECKING blocks included.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, and as
    importing ``pkg`` otherwise.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "kq" or target.startswith("kq."):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "kq")
    return found


def core_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in CORE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    modules = core_modules()
    return {
        name: {t for t in imports_of(path, name, set(modules)) if t in modules and t != name}
        for name, path in modules.items()
    }


def test_no_import_cycles():
    edges = graph()
    visiting, done, cycles = [], set(), []

    def visit(node: str) -> None:
        visiting.append(node)
        for nxt in sorted(edges[node]):
            if nxt in visiting:
                cycles.append(visiting[visiting.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt)
        visiting.pop()
        done.add(node)

    for node in sorted(edges):
        if node not in done:
            visit(node)
    assert cycles == []


def test_plugins_import_only_public_kq_modules():
    public = {
        "kq",
        "kq.transport",
        "kq.backend",
        "kq.pool",
        "kq.specs",
        "kq.states",
        "kq.exceptions",
        "kq.protocol",
        "kq.serialization",
        "kq.codec",
        "kq.kombu_transport",
        "kq.config",
        "kq.redact",
        "kq.plugins",
        "kq.loader",
        "kq.execution",
        "kq.canvas.wire",
        "kq.canvas.continuation",
        "kq.canvas.signature",
        "kq.testing",
        "kq.testing.contracts",
        "kq.testing.worker",
        "kq.testing.servers",
        "kq.beat",
        "kq.keyvalue",
    }
    modules = set(core_modules())
    offenders = []
    for path in (ROOT / "plugins").rglob("*.py"):
        for target in imports_of(path, "plugin", modules):
            if target not in public and not target.startswith("kq.testing."):
                offenders.append(f"{path.relative_to(ROOT)}: {target}")
    assert offenders == []
