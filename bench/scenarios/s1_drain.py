"""S1: drain pre-published no-op tasks, each proving it ran by one INCR of a Redis counter.

The queue is filled first (each framework's normal publish), then the worker is launched; the
clock runs from launch (interpreter start-up and imports included, as in the issue) until the
counter reaches N, and the counter must then stay at exactly N. The steady-state rate leaves
start-up out: it counts from the first poll (every 5 ms) that saw a task done.
"""

from __future__ import annotations

import workers
from charts import Charts
from context import RunContext
from results import ScenarioResults, Variant
from tables import Check, Section, cell, description, footnotes, missing, paragraphs, table

ID = "S1"
TITLE = "Drain throughput"
PROFILE_ROLES = ("worker",)
SIZES, QUICK_SIZES = (20_000, 100_000), (200,)
WORKERS = (
    workers.kq("threads"),
    workers.kq("prefork"),
    workers.kq("gevent"),
    workers.celery("prefork"),
    workers.celery("threads"),
    workers.dramatiq(2, 1),
)
#: (kq worker, Celery worker) pairs whose ratio the issue's 5x target applies to: every kq pool
#: against Celery's prefork (the issue's reference), and threads against threads.
PAIRS = (
    ("kq-prefork", "celery-prefork"),
    ("kq-threads", "celery-prefork"),
    ("kq-gevent", "celery-prefork"),
    ("kq-threads", "celery-threads"),
)
TARGET = 5.0


def variants(quick: bool) -> list[Variant]:
    return [
        Variant(f"{spec.key}@{n}", spec.label, spec.framework, spec, {"n": n}, group=f"{n:,} tasks")
        for n in (QUICK_SIZES if quick else SIZES)
        for spec in WORKERS
    ]


def run(ctx: RunContext, variant: Variant) -> dict[str, float]:
    n = variant.params["n"]
    assert variant.worker is not None
    with ctx.environment() as env:
        key = env.prefix + "done"
        published = ctx.client(variant.framework, "prepublish", env, n=n, key=key)
        with ctx.worker(variant.worker, env) as worker:
            progress = ctx.wait_count(key, n, worker, timeout=60 + n / 100)
            memory = worker.memory()
            ctx.expect_count(key, n)
    return {
        "seconds": progress.done_at,
        "rate": n / progress.done_at,
        "steady_rate": (n - progress.first_count) / max(progress.done_at - progress.first_at, 1e-9),
        "first_task_s": progress.first_at,
        "publish_rate": published["rate"],
        "processes": memory.processes,
        "threads": memory.threads,
    }


def report(results: ScenarioResults, charts: Charts, quick: bool) -> Section:
    sizes = QUICK_SIZES if quick else SIZES
    rows, checks, values = [], [], {}
    for n in sizes:
        for spec in WORKERS:
            key = f"{spec.key}@{n}"
            rows.append(
                [
                    f"{n:,}",
                    spec.label,
                    cell(results, key, "seconds", 2, " s"),
                    cell(results, key, "rate"),
                    cell(results, key, "steady_rate"),
                    cell(results, key, "first_task_s", 2, " s"),
                    cell(results, key, "processes"),
                    cell(results, key, "threads"),
                    cell(results, key, "publish_rate"),
                ]
            )
            rate = results.median(key, "rate")
            if rate is not None:
                values.setdefault(f"{n:,}", {})[spec.label] = rate
        for kq_key, celery_key in PAIRS:
            checks.append(
                Check(
                    ID,
                    f"drain {n:,}, startup included: {kq_key} / {celery_key} (tasks/s)",
                    results.median(f"{kq_key}@{n}", "rate"),
                    results.median(f"{celery_key}@{n}", "rate"),
                    "tasks/s",
                    TARGET,
                    True,
                    profile=(ID, f"{kq_key}@{sizes[0]}"),
                    missing=missing(results, f"{kq_key}@{n}"),
                )
            )
    headers = (
        "tasks",
        "worker",
        "time from launch",
        "tasks/s",
        "steady tasks/s",
        "first task after",
        "processes",
        "threads",
        "pre-publish tasks/s",
    )
    chart = charts.bars(
        "s1_drain",
        "S1: drain rate from worker launch (tasks/s, higher is better)",
        "tasks/s",
        values,
        {spec.label: spec.framework for spec in WORKERS},
    )
    body = paragraphs(
        description(__doc__),
        "Every worker runs 2 tasks at once (Dramatiq: 2 processes of 1 thread). *processes* and "
        "*threads* count the worker's whole process tree at the end of the drain.",
        table(headers, rows),
        footnotes(results),
        chart,
    )
    return Section(f"{ID}: {TITLE}", body, tuple(checks))
