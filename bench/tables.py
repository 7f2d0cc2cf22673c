"""The pieces of the report a scenario produces: Markdown tables, target checks, sections."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from results import ScenarioResults


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def num(value: float | None, digits: int = 0, suffix: str = "") -> str:
    """``1,234`` style; ``digits`` after the point; em dash for no value."""
    return "—" if value is None else f"{value:,.{digits}f}{suffix}"


def cell(results: ScenarioResults, key: str, metric: str, digits: int = 0, suffix: str = "") -> str:
    """A table cell: the median, or why there is none."""
    found = results.get(key)
    if found is None:
        return "—"
    value = found.median(metric)
    return num(value, digits, suffix) if value is not None else found.status


def paragraphs(*parts: str) -> str:
    """Markdown paragraphs, skipping empty ones."""
    return "\n\n".join(part for part in parts if part)


def description(doc: str | None) -> str:
    """A scenario module's docstring without its first line: the section's opening text."""
    return (doc or "").split("\n", 1)[-1].strip()


def footnotes(results: ScenarioResults) -> str:
    """¹ The reasons behind the table's "not available" and "failed" cells."""
    lines = [
        f"¹ {found.variant.label}: {found.why.splitlines()[0]}"
        for found in results.by_key.values()
        if found.why
    ]
    return "  \n".join(lines)


def missing(results: ScenarioResults, key: str) -> str:
    """Why a check has no kq number."""
    found = results.get(key)
    return found.why.splitlines()[0] if found is not None and found.why else ""


@attrs.frozen
class Check:
    """One of the issue's targets: kq's median against Celery's, as a ratio kq/Celery."""

    scenario: str
    what: str
    kq: float | None
    celery: float | None
    unit: str
    #: The ratio kq/Celery must be at least this (``higher_is_better``) or at most this.
    target: float
    higher_is_better: bool
    #: (scenario id, variant key) to run again under the profiler when the target is missed.
    profile: tuple[str, str] | None = None
    #: Why there is no ratio (kq's feature unavailable, a run failed).
    missing: str = ""

    @property
    def ratio(self) -> float | None:
        if self.kq is None or self.celery is None or self.celery == 0:
            return None
        return self.kq / self.celery

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    @property
    def needed(self) -> float | None:
        """What kq's number would have to be to meet the target."""
        return None if self.celery is None else self.celery * self.target

    def row(self) -> list[str]:
        sign = "≥" if self.higher_is_better else "≤"
        unmeasured = "not measured" + (f": {self.missing}" if self.missing else "")
        met = {True: "yes", False: "**no**", None: unmeasured}
        largest = max(abs(self.kq or 0), abs(self.celery or 0))
        digits = 2 if largest < 10 else 1 if largest < 100 else 0
        return [
            self.scenario,
            self.what,
            num(self.kq, digits, f" {self.unit}"),
            num(self.celery, digits, f" {self.unit}"),
            num(self.ratio, 2, "x"),
            f"{sign} {self.target:g}x",
            met[self.met],
            "—" if self.met else num(self.needed, digits, f" {self.unit}"),
        ]


CHECK_HEADERS = ("scenario", "what", "kq", "Celery", "kq/Celery", "target", "met?", "kq would need")


@attrs.frozen
class Section:
    """A scenario's part of the report."""

    title: str
    body: str
    checks: tuple[Check, ...] = ()
