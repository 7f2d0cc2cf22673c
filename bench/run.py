"""Benchmarks of kq, Celery and Dramatiq side by side; writes the report (docs/benchmarks.md).

    python bench/run.py                      # every scenario, 3 repeats, profiles, the doc
    python bench/run.py --quick              # tiny sizes, 1 repeat, report in a temp dir
    python bench/run.py --scenarios S1,S3 --repeat 5 --out /tmp/b.md

Needs bench/requirements.txt and kq with its plugins installed (``nox -s bench`` does both), a
Redis at 127.0.0.1:6379 and a RabbitMQ at 127.0.0.1:5672 (guest/guest). Exits non-zero when any
run fails or a check on what ran fails; timings are never asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import attrs
import machine
import report
from charts import Charts
from context import RunContext
from frameworks.benchkit import Unavailable
from profiling import ProfiledRun, summarize
from results import ScenarioResults, Variant
from scenarios import SCENARIOS
from services import AMQP_URL, REDIS_URL, Services
from tables import Section
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and one repeat: checks the harness works (CI smoke)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        metavar="S1,S2,...",
        help=f"which scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="runs per configuration; tables show medians (default: 3, quick: 1)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="report file; charts go to benchmarks/ beside it "
        "(default: docs/benchmarks.md, quick: a new temporary directory)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run kq's side of every missed target again under py-spy and put the "
        "top functions in the report (default: on, off with --quick)",
    )
    parser.add_argument("--redis", default=REDIS_URL, help=f"Redis URL, its own DB (default {REDIS_URL})")
    parser.add_argument(
        "--amqp", default=AMQP_URL, help=f"RabbitMQ URL (default {AMQP_URL})".replace("%", "%%")
    )
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.profile is None:
        args.profile = not args.quick
    if args.out is None:
        directory = Path(tempfile.mkdtemp(prefix="kq-bench-")) if args.quick else ROOT / "docs"
        args.out = directory / "benchmarks.md"
    return args


def plan(scenarios: list[ModuleType], quick: bool, repeat: int) -> list[tuple[ModuleType, Variant]]:
    """Every run in order: per scenario and group, repeat after repeat, the frameworks alternate."""
    runs = []
    for scenario in scenarios:
        variants = scenario.variants(quick)
        for group in dict.fromkeys(v.group for v in variants):
            for _ in range(repeat):
                runs += [(scenario, v) for v in variants if v.group == group]
    return runs


def measure(ctx: RunContext, scenario: ModuleType, variant: Variant, results: ScenarioResults) -> str | None:
    """One run into ``results``; the error text if it failed."""
    found = results.add(variant)
    if found.unavailable:
        return None  # it will not become available in the next repeat
    try:
        found.runs.append(scenario.run(ctx, variant))
    except Unavailable as exc:
        found.unavailable = str(exc)
    except Exception as exc:  # every failure is reported; the other runs go on
        error = f"{type(exc).__name__}: {exc}".strip()
        found.errors.append(error)
        return f"{scenario.ID} {variant.label} [{variant.group}]: {error}"
    return None


def profile(ctx: RunContext, sections: list[Section], quick: bool, errors: list[str]) -> list[ProfiledRun]:
    """Run kq's side of each missed target once more under py-spy, and summarize the samples."""
    if not Path(sys.executable).with_name("py-spy").exists():
        errors.append("profile: py-spy is not installed next to this Python (bench/requirements.txt)")
        return []
    wanted: dict[tuple[str, str], list[str]] = {}
    for check in (c for section in sections for c in section.checks):
        if check.met is False and check.profile is not None:
            wanted.setdefault(check.profile, []).append(check.what)
    found = []
    for (scenario_id, key), whats in tqdm(wanted.items(), desc="profiling", file=sys.stderr):
        scenario = SCENARIOS[scenario_id]
        variant = next(v for v in scenario.variants(quick) if v.key == key)
        directory = ctx.work_dir / f"profile-{scenario_id}-{key}"
        directory.mkdir()
        try:
            scenario.run(
                attrs.evolve(ctx, profile_dir=directory, profile_roles=scenario.PROFILE_ROLES), variant
            )
        except Exception as exc:
            errors.append(f"profile {scenario_id} {variant.label}: {type(exc).__name__}: {exc}")
            continue
        heading = f"{scenario_id} {variant.label}" + (f" ({variant.group})" if variant.group else "")
        found.append(
            ProfiledRun(
                heading,
                tuple(whats),
                tuple(
                    summarize(role, sorted(directory.glob(f"{role}-*.txt")))
                    for role in scenario.PROFILE_ROLES
                ),
            )
        )
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [SCENARIOS[s] for s in args.scenarios.split(",")]
    services = Services(args.redis, args.amqp)
    services.check()
    # Read before the run writes its charts into the checkout, which would mark it changed.
    about = machine.describe(ROOT, services.server_versions())

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through every run's cleanup

    signal.signal(signal.SIGTERM, interrupted)
    started, when = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    keys_before = services.redis.dbsize()
    results = {s.ID: ScenarioResults() for s in scenarios}
    with tempfile.TemporaryDirectory(prefix="kq-bench-work-") as work:
        runs = plan(scenarios, args.quick, args.repeat)
        done = 0
        with tqdm(total=len(runs), file=sys.stderr, unit="run", dynamic_ncols=True) as bar:
            ctx = RunContext(services, Path(work), status=bar.set_postfix_str)
            try:
                for scenario, variant in runs:
                    bar.set_description(f"{scenario.ID} {variant.label}"[:60])
                    bar.set_postfix_str("")
                    error = measure(ctx, scenario, variant, results[scenario.ID])
                    if error:
                        bar.write(f"bench: {error}", file=sys.stderr)
                    bar.update()
                    done += 1
            except KeyboardInterrupt:
                # Keep what was measured, but never in place of a complete report.
                args.out = Path(tempfile.mkdtemp(prefix="kq-bench-interrupted-")) / "benchmarks.md"
                args.profile = False
        charts = Charts(args.out.parent / "benchmarks", "benchmarks")
        sections = [s.report(results[s.ID], charts, args.quick) for s in scenarios]
        errors = [f"{s.ID} {label}: {e}" for s in scenarios for label, e in results[s.ID].errors()]
        if done < len(runs):
            errors.append(f"interrupted (SIGINT or SIGTERM) after {done} of {len(runs)} runs")
        profiles = profile(ctx, sections, args.quick, errors) if args.profile else []
    left = services.redis.dbsize() - keys_before
    if left > 0:  # a warning only: someone else may be using the same database
        print(
            f"bench: warning: {args.redis} holds {left} more key(s) than before; every key of this "
            "harness is deleted, so another client wrote them or a framework ignored its prefix",
            file=sys.stderr,
        )
    write(args, sections, profiles, errors, results, about, when, time.monotonic() - started)
    print(f"bench: report written to {args.out}", file=sys.stderr)
    for error in errors:
        print(f"bench: FAILED {error}", file=sys.stderr)
    return 130 if done < len(runs) else 1 if errors else 0


def write(
    args: argparse.Namespace,
    sections: list[Section],
    profiles: list[ProfiledRun],
    errors: list[str],
    results: dict[str, ScenarioResults],
    about: dict[str, str],
    when: datetime.datetime,
    duration: float,
) -> None:
    versions = machine.versions()
    specs = {
        v.worker.label: v.worker
        for s in SCENARIOS.values()
        if s.ID in results
        for v in s.variants(args.quick)
        if v.worker is not None
    }
    text = report.render(
        command=" ".join(["python bench/run.py", *sys.argv[1:]]),
        when=when.strftime("%Y-%m-%d %H:%M UTC"),
        duration=duration,
        repeat=args.repeat,
        quick=args.quick,
        machine=about,
        versions=versions,
        sections=sections,
        workers=list(specs.values()),
        profiles=profiles,
        errors=errors,
        blocks=report.kept_blocks(args.out, ROOT / "docs" / "benchmarks.md"),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    raw: dict[str, Any] = {
        "generated": when.isoformat(),
        "machine": about,
        "versions": versions,
        "results": {sid: r.to_json() for sid, r in results.items()},
    }
    (args.out.parent / "benchmarks" / "results.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    sys.exit(main())
