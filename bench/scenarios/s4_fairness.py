"""S4: fairness: one long task, then short ones, on a worker with 2 slots.

Once the worker has run a first task, the client publishes one long task and right after it the
short ones. Each task records its publish, start and finish times into Redis; a short task's
latency is publish to finish. A fair worker runs the short tasks in its free slot while the long
one runs; an unfair one leaves some queued behind the long task in the busy slot.
"""

from __future__ import annotations

import json
import time

import workers
from charts import Charts
from context import RunContext
from frameworks.benchkit import percentile
from results import ScenarioResults, Variant
from tables import Section, cell, description, footnotes, paragraphs, table

ID = "S4"
TITLE = "Fairness: short tasks behind a long one"
PROFILE_ROLES = ()
#: (worker, run settings, what the settings are)
WORKERS = (
    (workers.kq("prefork"), {}, "defaults"),
    (
        workers.kq("prefork", 2, "--prefetch-multiplier", "0", note="fair"),
        {"acks_late": True},
        "--prefetch-multiplier 0, task_acks_late",
    ),
    (workers.celery("prefork"), {}, "defaults"),
    (
        workers.celery("prefork", 2, "-O", "fair", "--prefetch-multiplier", "1", note="fair"),
        {"acks_late": True},
        "-O fair --prefetch-multiplier 1, task_acks_late",
    ),
    (workers.dramatiq(2, 1), {}, "defaults"),
)


def variants(quick: bool) -> list[Variant]:
    params = (
        {"long_s": 1.0, "shorts": 20, "short_s": 0.01}
        if quick
        else {"long_s": 3.0, "shorts": 100, "short_s": 0.01}
    )
    return [
        Variant(
            spec.key,
            f"{spec.framework} {spec.pool} c={spec.slots}, {settings}",
            spec.framework,
            spec,
            params,
            env=env,
        )
        for spec, env, settings in WORKERS
    ]


def run(ctx: RunContext, variant: Variant) -> dict[str, float]:
    assert variant.worker is not None
    shorts, long_s = variant.params["shorts"], variant.params["long_s"]
    with ctx.environment(**variant.env) as env, ctx.worker(variant.worker, env) as worker:
        key = env.prefix + "records"
        ctx.client(
            variant.framework,
            "fairness",
            env,
            worker=worker,
            key=key,
            ready_key=env.prefix + "ready",
            **variant.params,
        )
        deadline = time.monotonic() + 60 + long_s + shorts
        while ctx.services.redis.llen(key) < shorts + 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ctx.services.redis.llen(key)} of {shorts + 1} tasks ran")
            worker.check_alive()
            time.sleep(0.02)
        records = [json.loads(r) for r in ctx.services.redis.lrange(key, 0, -1)]
    long_end = next(finished for seconds, _, _, finished in records if seconds == long_s)
    short = sorted(finished - published for seconds, published, _, finished in records if seconds != long_s)
    during = sum(1 for seconds, _, _, finished in records if seconds != long_s and finished < long_end)
    first_publish = min(published for _, published, _, _ in records)
    return {
        "p50_ms": percentile(short, 0.5) * 1000,
        "p99_ms": percentile(short, 0.99) * 1000,
        "max_ms": short[-1] * 1000,
        "during_long_pct": 100 * during / len(short),
        "all_done_s": max(finished for *_, finished in records) - first_publish,
    }


def report(results: ScenarioResults, charts: Charts, quick: bool) -> Section:
    params = variants(quick)[0].params
    rows, values = [], {}
    for variant in variants(quick):
        key = variant.key
        rows.append(
            [
                variant.label,
                cell(results, key, "p50_ms", 0, " ms"),
                cell(results, key, "p99_ms", 0, " ms"),
                cell(results, key, "max_ms", 0, " ms"),
                cell(results, key, "during_long_pct", 0, " %"),
                cell(results, key, "all_done_s", 2, " s"),
            ]
        )
        value = results.median(key, "p99_ms")
        if value is not None:
            values.setdefault("", {})[variant.label] = value
    chart = charts.bars(
        "s4_fairness",
        "S4: short-task p99 latency behind a long task (ms, lower is better)",
        "ms",
        values,
        {v.label: v.framework for v in variants(quick)},
    )
    body = paragraphs(
        description(__doc__),
        f"One task of {params['long_s']:g} s, then {params['shorts']} of {params['short_s'] * 1000:g} ms. "
        "The issue sets no target here; an ideal worker finishes every short task while the long one "
        "runs, each within about the time the short tasks ahead of it take.",
        table(
            ("worker", "short p50", "short p99", "short max", "short done while long ran", "all done after"),
            rows,
        ),
        footnotes(results),
        chart,
    )
    return Section(f"{ID}: {TITLE}", body)
