"""Development sessions. `nox -s lint typecheck docs tests bench_smoke` is what CI runs (see README.md
and .ci/run).

- lint: ruff over the whole tree, lint rules and formatting (`ruff format` fixes the latter).
- core: the kernel's own tests with no plugin installed (proves the kernel stands alone).
- plugin-<name>: one plugin with the core, running that plugin's tests (its contract suites);
  kq-sqlite and kq-threads too, which kq.testing's kq_app and kq_worker fixtures run on.
- e2e: core and every plugin, running the cross-plugin end-to-end tests.
- chaos: the same, running the fault-injection tests of tests/chaos (docs/reliability.md); `tests`
  runs them too.
- tests: core, every plugin and the example plugins (EXAMPLES) in one environment, running
  everything (fastest full run): on two processes, then the tests marked `serial` alone. Pass
  pytest arguments after `--` to run those instead (one process).
- typecheck: mypy --strict (configured in pyproject.toml) over core/kq and the package of every
  plugin and example plugin (plugins/*/src/kq_*), each one's public API.
- bench: kq side by side with Celery and Dramatiq (bench/run.py); rewrites docs/benchmarks.md.
- bench_smoke: the same with --quick, writing into a temporary directory (checks the harness).
- docs: the documentation site (mkdocs.yml) built with --strict into a temporary directory; the
  configuration and CLI references are generated from the code by docs/hooks.py.
- fuzz: coverage-guided fuzzing of the decoder with atheris for 2 minutes (tests/fuzz); not in CI,
  whose pytest run has the hypothesis fuzz tests. Pass libFuzzer flags after `--`.
"""

from __future__ import annotations

import pathlib

import nox

ROOT = pathlib.Path(__file__).parent
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())

#: What kq.testing's ``kq_app``/``kq_worker`` fixtures (and the contracts using them) run on.
TEST_KIT = ("kq-sqlite", "kq-threads")
#: Other plugins a plugin's tests need: kq-auth's end-to-end tests run on Redis and RabbitMQ;
#: kq-django's run Django on PostgreSQL through psycopg 3, which kq-sqlalchemy installs.
TEST_NEEDS = {"kq-auth": ("kq-redis", "kq-amqp"), "kq-django": ("kq-sqlalchemy",)}
#: Example plugin packages under examples/ that `tests` installs, so that their tests run in CI.
EXAMPLES = ("kq-plugin-example",)

nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.reuse_existing_virtualenvs = True


def install_kq(session: nox.Session, *plugins: str) -> None:
    """Install the core with its test extras and the named plugins, all from this checkout."""
    session.install("-e", ".[test]", *[arg for p in plugins for arg in ("-e", f"plugins/{p}")])


@nox.session
def lint(session: nox.Session) -> None:
    # Pinned: a new ruff release may format differently, and CI must not turn red by itself.
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def core(session: nox.Session) -> None:
    install_kq(session)
    session.run("pytest", "tests/kernel", *session.posargs)


@nox.session
@nox.parametrize("plugin", PLUGINS, ids=PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    install_kq(session, *dict.fromkeys((plugin, *TEST_NEEDS.get(plugin, ()), *TEST_KIT)))
    session.run("pytest", f"plugins/{plugin}/tests", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site with every warning an error (broken links and anchors, pages not in the
    nav). The kernel is installed because docs/hooks.py reads its settings class and click tree."""
    session.install("-r", "docs/requirements.txt", "-e", ".")
    site = pathlib.Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    install_kq(session, "kq-sqlite", "kq-redis")
    session.install("atheris")
    corpus = pathlib.Path(session.create_tmp()) / "fuzz-corpus"
    corpus.mkdir(exist_ok=True)
    session.run(
        "python", "tests/fuzz/atheris_decode.py", "-max_total_time=120", *session.posargs, str(corpus)
    )


@nox.session
def e2e(session: nox.Session) -> None:
    install_kq(session, *PLUGINS)
    session.run("pytest", "tests/e2e", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    install_kq(session, *PLUGINS)
    session.run("pytest", "tests/chaos", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    install_kq(session, *PLUGINS)
    session.install(*[arg for e in EXAMPLES for arg in ("-e", f"examples/{e}")])
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    # Two test processes (pytest-xdist) for everything but the tests marked `serial`, which stop
    # a shared server or measure the machine and so run afterwards, alone.
    try:
        session.run("pytest", "-n", "2", "-m", "not serial")
    finally:  # the serial tests run (and report) even when the parallel ones failed
        session.run("pytest", "-m", "serial")


#: Stubs of libraries that ship no type hints of their own: python-dateutil (kq.beat), PyYAML
#: (kq-yaml), gevent and greenlet (kq-gevent). Untyped ones without stubs are listed in
#: pyproject.toml's [tool.mypy] overrides.
TYPE_STUBS = ("types-python-dateutil", "types-PyYAML", "types-gevent", "types-greenlet")


def plugin_packages() -> list[str]:
    """Each plugin's package, ``plugins/<name>/src/kq_*`` (and the example plugins'): its
    ``__init__`` is the entry-point module, the plugin's public API."""
    roots = [ROOT / "plugins" / p for p in PLUGINS] + [ROOT / "examples" / e for e in EXAMPLES]
    return sorted(
        str(package.relative_to(ROOT))
        for root in roots
        for package in (root / "src").glob("kq_*")
        if (package / "__init__.py").exists()
    )


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict (pyproject.toml's [tool.mypy]) over the kernel and every plugin, in one run."""
    session.install("setuptools>=68", "mypy>=1.10", *TYPE_STUBS)
    # What install_kq installs, and the example plugins, each built with this environment's
    # setuptools instead of a fresh build environment apiece: the install takes half the time.
    session.install(
        "--no-build-isolation",
        "-e",
        ".[test]",
        *[arg for p in PLUGINS for arg in ("-e", f"plugins/{p}")],
        *[arg for e in EXAMPLES for arg in ("-e", f"examples/{e}")],
    )
    session.run("mypy", "core/kq", *plugin_packages(), *session.posargs)


#: What bench/ runs kq with. Celery and Dramatiq come from bench/requirements.txt, and only ever
#: into the bench sessions' own environments.
BENCH_PLUGINS = ("kq-redis", "kq-amqp", "kq-threads", "kq-prefork", "kq-gevent")


def install_bench(session: nox.Session) -> None:
    session.install(
        "-r",
        "bench/requirements.txt",
        "-e",
        ".",
        *[arg for p in BENCH_PLUGINS for arg in ("-e", f"plugins/{p}")],
    )


@nox.session
def bench(session: nox.Session) -> None:
    install_bench(session)
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(name="bench_smoke")
def bench_smoke(session: nox.Session) -> None:
    install_bench(session)
    out = pathlib.Path(session.create_tmp()) / "benchmarks.md"
    session.run("python", "bench/run.py", "--quick", "--out", str(out), *session.posargs)
