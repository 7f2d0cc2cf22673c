"""S2: publish rate from one connection, with no worker running.

One call at a time (``task.delay()``, Dramatiq's ``actor.send()``), each call timed for the p50
and p99 latency; and the batch APIs (kq's ``app.send_many`` and ``group(...).apply_async()``,
Celery's and Dramatiq's group), timed per batch. Each client runs in a fresh process and makes
some untimed calls first; afterwards the queue must hold exactly what was published.
"""

from __future__ import annotations

from charts import Charts
from context import RunContext
from results import ScenarioResults, Variant
from tables import Check, Section, cell, description, footnotes, missing, paragraphs, table

ID = "S2"
TITLE = "Publish rate"
PROFILE_ROLES = ("client",)
#: (key, framework, batch API or "" for one call at a time, extra run settings, label note)
APIS = (
    ("kq-each", "kq", "", {}, "task.delay()"),
    ("celery-each", "celery", "", {}, "task.delay()"),
    ("dramatiq-each", "dramatiq", "", {}, "actor.send()"),
    ("kq-send_many", "kq", "send_many", {}, "app.send_many()"),
    ("kq-group", "kq", "group", {}, "group().apply_async()"),
    ("celery-group", "celery", "group", {}, "group().apply_async()"),
    ("dramatiq-group", "dramatiq", "group", {}, "group().run()"),
)
#: RabbitMQ also runs Celery with publisher confirms, which kq-amqp always uses.
AMQP_EXTRA = (("celery-each-confirm", "celery", "", {"confirm": True}, "task.delay(), confirm_publish"),)
BROKERS = {"redis": "Redis", "amqp": "RabbitMQ"}
#: (kq variant, target kq/Celery-one-by-one rate) on Redis, from the issue.
TARGETS = (("kq-each", 3.0), ("kq-send_many", 10.0), ("kq-group", 10.0))


def variants(quick: bool) -> list[Variant]:
    n, warmup, size = (200, 20, 50) if quick else (20_000, 200, 1_000)
    found = []
    for broker in BROKERS:
        for key, framework, api, env, note in APIS + (AMQP_EXTRA if broker == "amqp" else ()):
            params = {"n": n, "warmup": warmup} if not api else {"n": n, "size": size, "api": api}
            found.append(
                Variant(
                    f"{key}@{broker}",
                    f"{framework} {note}",
                    framework,
                    None,
                    params,
                    group=BROKERS[broker],
                    env={"broker": broker, **env},
                )
            )
    return found


def run(ctx: RunContext, variant: Variant) -> dict[str, float]:
    operation = "publish_batch" if "api" in variant.params else "publish_each"
    with ctx.environment(**variant.env) as env:
        return ctx.client(variant.framework, operation, env, key=env.prefix + "unused", **variant.params)


def report(results: ScenarioResults, charts: Charts, quick: bool) -> Section:
    rows, checks, values, frameworks = [], [], {}, {}
    for broker, name in BROKERS.items():
        reference = results.median(f"celery-each@{broker}", "rate")
        for key, framework, api, _, _ in APIS + (AMQP_EXTRA if broker == "amqp" else ()):
            found = results.get(f"{key}@{broker}")
            if found is None:
                continue
            rate = found.median("rate")
            ratio = f"{rate / reference:.2f}x" if rate and reference and framework == "kq" else ""
            per = "batch" if api else "call"
            rows.append(
                [
                    name,
                    found.variant.label,
                    cell(results, found.variant.key, "rate"),
                    ratio,
                    cell(results, found.variant.key, "p50_us", 0, f" µs/{per}"),
                    cell(results, found.variant.key, "p99_us", 0, f" µs/{per}"),
                ]
            )
            if rate is not None:
                values.setdefault(name, {})[found.variant.label] = rate
                frameworks[found.variant.label] = framework
        for key, target in TARGETS if broker == "redis" else ():
            found = results.get(f"{key}@{broker}")
            checks.append(
                Check(
                    ID,
                    f"publish on {name}: {found.variant.label if found else key} / Celery task.delay()",
                    results.median(f"{key}@{broker}", "rate"),
                    reference,
                    "tasks/s",
                    target,
                    True,
                    profile=(ID, f"{key}@{broker}"),
                    missing=missing(results, f"{key}@{broker}"),
                )
            )
    headers = ("broker", "client", "tasks/s", "kq/Celery delay()", "p50", "p99")
    chart = charts.bars(
        "s2_publish",
        "S2: publish rate from one connection (tasks/s, higher is better)",
        "tasks/s",
        values,
        frameworks,
    )
    body = paragraphs(
        description(__doc__),
        f"Batches hold {1_000 if not quick else 50:,} tasks. The ratio column is against Celery's "
        "one-at-a-time `delay()` on the same broker, as the issue asks; the targets apply to Redis. "
        "On RabbitMQ kq-amqp waits for publisher confirms on every publish; Celery does not unless "
        "`confirm_publish` is set, so Celery runs both ways there.",
        table(headers, rows),
        footnotes(results),
        chart,
    )
    return Section(f"{ID}: {TITLE}", body, tuple(checks))
