"""What the runs produced: per variant, one measurement per repeat, reduced to medians."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import attrs
from workers import WorkerSpec


@attrs.frozen
class Variant:
    """One configuration of a scenario: a framework, its worker (if any) and the parameters."""

    #: Unique within the scenario; results are kept under it.
    key: str
    label: str
    framework: str
    worker: WorkerSpec | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict)
    #: Variants of one group alternate with each other, run after run (e.g. one task count).
    group: str = ""
    #: Settings of the run beyond the defaults (see ``Services.new_run``).
    env: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.define
class VariantResults:
    variant: Variant
    #: One mapping per completed run: numbers are reduced to medians, text is kept from the last.
    runs: list[dict[str, Any]] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    #: Why the framework cannot run this variant, instead of a number.
    unavailable: str | None = None

    def median(self, metric: str) -> float | None:
        values = [run[metric] for run in self.runs if isinstance(run.get(metric), (int, float))]
        return statistics.median(values) if values else None

    def text(self, metric: str) -> str | None:
        values = [run[metric] for run in self.runs if isinstance(run.get(metric), str)]
        return values[-1] if values else None

    @property
    def status(self) -> str:
        """What a table cell shows instead of a number when there is none."""
        if self.unavailable:
            return "not available¹"
        return "failed¹" if self.errors and not self.runs else "—"

    @property
    def why(self) -> str:
        """Why there is no number, in full."""
        if self.unavailable:
            return f"not available: {self.unavailable}"
        return f"failed: {self.errors[-1]}" if self.errors and not self.runs else ""


@attrs.define
class ScenarioResults:
    by_key: dict[str, VariantResults] = attrs.field(factory=dict)

    def add(self, variant: Variant) -> VariantResults:
        return self.by_key.setdefault(variant.key, VariantResults(variant))

    def get(self, key: str) -> VariantResults | None:
        return self.by_key.get(key)

    def median(self, key: str, metric: str) -> float | None:
        found = self.by_key.get(key)
        return None if found is None else found.median(metric)

    def errors(self) -> list[tuple[str, str]]:
        return [(r.variant.label, e) for r in self.by_key.values() for e in r.errors]

    def to_json(self) -> dict[str, Any]:
        return {
            key: {"label": r.variant.label, "runs": r.runs, "errors": r.errors, "unavailable": r.unavailable}
            for key, r in self.by_key.items()
        }
