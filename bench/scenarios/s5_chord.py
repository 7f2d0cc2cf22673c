"""S5: a chord of ``add.s(i, i)`` header tasks and a body summing their results.

``chord(header)(body).get()`` in the Celery spelling, on Redis broker and backend, timed from the
call to the body's result in hand once the worker is warm; the client checks the sum. Dramatiq
has no chord (its group completion callbacks do not hand the header's results to the body), so it
does not run here.
"""

from __future__ import annotations

import workers
from charts import Charts
from context import RunContext
from results import ScenarioResults, Variant
from tables import Check, Section, cell, description, footnotes, missing, paragraphs, table

ID = "S5"
TITLE = "Chord"
PROFILE_ROLES = ("worker", "client")
WORKERS = (workers.kq("prefork"), workers.celery("prefork"))
TARGET = 0.25


def variants(quick: bool) -> list[Variant]:
    params = {"n": 50, "wait": 60, "warmup": 3} if quick else {"n": 1_000, "wait": 300, "warmup": 20}
    return [
        Variant(spec.key, spec.label, spec.framework, spec, params, env={"results": True}) for spec in WORKERS
    ]


def run(ctx: RunContext, variant: Variant) -> dict[str, float]:
    assert variant.worker is not None
    with ctx.environment(**variant.env) as env, ctx.worker(variant.worker, env) as worker:
        return ctx.client(variant.framework, "chord", env, worker=worker, **variant.params)


def report(results: ScenarioResults, charts: Charts, quick: bool) -> Section:
    n = variants(quick)[0].params["n"]
    rows = [[spec.label, cell(results, spec.key, "seconds", 2, " s")] for spec in WORKERS]
    values = {
        "": {spec.label: v for spec in WORKERS if (v := results.median(spec.key, "seconds")) is not None}
    }
    check = Check(
        ID,
        f"chord of {n:,}: kq prefork / Celery prefork (s)",
        results.median("kq-prefork", "seconds"),
        results.median("celery-prefork", "seconds"),
        "s",
        TARGET,
        False,
        profile=(ID, "kq-prefork"),
        missing=missing(results, "kq-prefork"),
    )
    chart = charts.bars(
        "s5_chord",
        f"S5: chord of {n:,} (s, lower is better)",
        "s",
        values,
        {spec.label: spec.framework for spec in WORKERS},
    )
    body = paragraphs(
        description(__doc__), table(("worker", f"chord of {n:,}"), rows), footnotes(results), chart
    )
    return Section(f"{ID}: {TITLE}", body, (check,))
