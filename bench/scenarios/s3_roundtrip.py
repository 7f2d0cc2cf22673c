"""S3: ``add.delay(1, 2).get()`` round trips, one after another, on Redis broker and backend.

The worker is already running and warm (untimed calls first). Each call is timed from the
publish to the result in hand; the client checks every result is 3.
"""

from __future__ import annotations

import workers
from charts import Charts
from context import RunContext
from results import ScenarioResults, Variant
from tables import Check, Section, cell, description, footnotes, missing, paragraphs, table

ID = "S3"
TITLE = "Round trip latency"
PROFILE_ROLES = ("worker", "client")
WORKERS = (workers.kq("threads"), workers.celery("threads"), workers.dramatiq(1, 2))
#: (metric, target kq/Celery) from the issue.
TARGETS = (("p50_us", 0.3), ("p99_us", 0.5))


def variants(quick: bool) -> list[Variant]:
    n, warmup = (50, 5) if quick else (2_000, 50)
    return [
        Variant(spec.key, spec.label, spec.framework, spec, {"n": n, "warmup": warmup}, env={"results": True})
        for spec in WORKERS
    ]


def run(ctx: RunContext, variant: Variant) -> dict[str, float]:
    assert variant.worker is not None
    with ctx.environment(**variant.env) as env, ctx.worker(variant.worker, env) as worker:
        return ctx.client(variant.framework, "roundtrip", env, worker=worker, **variant.params)


def report(results: ScenarioResults, charts: Charts, quick: bool) -> Section:
    rows, values = [], {}
    for spec in WORKERS:
        rows.append(
            [
                spec.label,
                cell(results, spec.key, "p50_us", 0, " µs"),
                cell(results, spec.key, "p99_us", 0, " µs"),
                cell(results, spec.key, "rate"),
            ]
        )
        for metric, name in (("p50_us", "p50"), ("p99_us", "p99")):
            value = results.median(spec.key, metric)
            if value is not None:
                values.setdefault(name, {})[spec.label] = value / 1000
    checks = tuple(
        Check(
            ID,
            f"delay().get() {metric[:3]}: kq threads / Celery threads (ms)",
            _ms(results.median("kq-threads", metric)),
            _ms(results.median("celery-threads", metric)),
            "ms",
            target,
            False,
            profile=(ID, "kq-threads"),
            missing=missing(results, "kq-threads"),
        )
        for metric, target in TARGETS
    )
    chart = charts.bars(
        "s3_roundtrip",
        "S3: delay().get() round trip (ms, lower is better)",
        "ms",
        values,
        {spec.label: spec.framework for spec in WORKERS},
    )
    n = next(iter(variants(quick))).params["n"]
    body = paragraphs(
        description(__doc__),
        f"{n:,} calls per run. Dramatiq uses its Results middleware with the Redis backend "
        "(`message.get_result(block=True)`).",
        table(("worker", "p50", "p99", "calls/s"), rows),
        footnotes(results),
        chart,
    )
    return Section(f"{ID}: {TITLE}", body, checks)


def _ms(microseconds: float | None) -> float | None:
    return None if microseconds is None else microseconds / 1000
