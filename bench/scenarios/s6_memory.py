"""S6: worker start-up time and memory, idle and loaded.

One task is queued before the worker is launched; start-up is the time from launch to that
task's INCR. The idle figures are taken a moment later, the loaded ones are the peak while the
worker drains tasks published to it as it runs. Memory is the sum over the worker's process tree
(psutil): RSS as ``ps`` shows it (pages a forked child shares with its parent counted in each)
and PSS (shared pages split between the processes sharing them).
"""

from __future__ import annotations

import time

import workers
from charts import Charts
from context import RunContext
from results import ScenarioResults, Variant
from tables import Check, Section, cell, description, footnotes, missing, paragraphs, table

ID = "S6"
TITLE = "Start-up time and memory"
PROFILE_ROLES = ()
WORKERS = (
    workers.kq("prefork"),
    workers.kq("threads"),
    workers.celery("prefork"),
    workers.celery("threads"),
    workers.dramatiq(1, 2),
    workers.dramatiq(2, 1),
)
PAIRS = (("kq-prefork", "celery-prefork"), ("kq-threads", "celery-threads"))
TARGET = 0.5


def variants(quick: bool) -> list[Variant]:
    params = {"load": 200, "settle": 1.0} if quick else {"load": 20_000, "settle": 3.0}
    return [Variant(spec.key, spec.label, spec.framework, spec, params) for spec in WORKERS]


def run(ctx: RunContext, variant: Variant) -> dict[str, float | str]:
    assert variant.worker is not None
    load = variant.params["load"]
    with ctx.environment() as env:
        first, loaded = env.prefix + "first", env.prefix + "load"
        ctx.client(variant.framework, "prepublish", env, n=1, key=first)
        with ctx.worker(variant.worker, env) as worker:
            startup = ctx.wait_count(first, 1, worker, timeout=60).done_at
            time.sleep(variant.params["settle"])
            idle = worker.memory()
            with worker.peak_memory() as peak:
                ctx.client(
                    variant.framework, "prepublish", env, worker=worker, n=load, key=loaded, check=False
                )
                ctx.wait_count(loaded, load, worker, timeout=60 + load / 100)
            ctx.expect_count(loaded, load)
    return {
        "startup_s": startup,
        "idle_rss_mb": idle.rss_mb,
        "idle_pss_mb": idle.pss_mb,
        "loaded_rss_mb": peak[0].rss_mb,
        "loaded_pss_mb": peak[0].pss_mb,
        "processes": idle.processes,
        "idle_breakdown": idle.breakdown,
    }


def report(results: ScenarioResults, charts: Charts, quick: bool) -> Section:
    rows, values, checks = [], {}, []
    for spec in WORKERS:
        key = spec.key
        found = results.get(key)
        rows.append(
            [
                spec.label,
                cell(results, key, "startup_s", 2, " s"),
                cell(results, key, "idle_rss_mb", 0, " MB"),
                cell(results, key, "idle_pss_mb", 0, " MB"),
                cell(results, key, "loaded_rss_mb", 0, " MB"),
                cell(results, key, "loaded_pss_mb", 0, " MB"),
                (found.text("idle_breakdown") if found else None) or "—",
            ]
        )
        for metric, name in (("idle_rss_mb", "idle RSS"), ("loaded_rss_mb", "loaded RSS")):
            value = results.median(key, metric)
            if value is not None:
                values.setdefault(name, {})[spec.label] = value
    for kq_key, celery_key in PAIRS:
        checks.append(
            Check(
                ID,
                f"idle worker RSS: {kq_key} c=2 / {celery_key} c=2 (MB)",
                results.median(kq_key, "idle_rss_mb"),
                results.median(celery_key, "idle_rss_mb"),
                "MB",
                TARGET,
                False,
                missing=missing(results, kq_key),
            )
        )
    load = variants(quick)[0].params["load"]
    chart = charts.bars(
        "s6_memory",
        "S6: worker memory, RSS summed over the process tree (MB, lower is better)",
        "MB",
        values,
        {spec.label: spec.framework for spec in WORKERS},
    )
    body = paragraphs(
        description(__doc__),
        f"Loaded: peak while draining {load:,} count tasks. The last column is each process's RSS "
        "(MB) when idle, from the last run.",
        table(
            (
                "worker",
                "start-up to first task",
                "idle RSS",
                "idle PSS",
                "loaded RSS",
                "loaded PSS",
                "idle RSS per process",
            ),
            rows,
        ),
        footnotes(results),
        chart,
    )
    return Section(f"{ID}: {TITLE}", body, tuple(checks))
