"""Bar charts of the medians (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

#: One colour per framework, so a chart reads the same everywhere.
COLOURS = {"kq": "#2b7bba", "celery": "#8cb24a", "dramatiq": "#e08a2c"}


class Charts:
    """Writes PNGs into ``directory``; links are relative to the report's own directory."""

    def __init__(self, directory: Path, link_base: str) -> None:
        self.directory = directory
        self.link_base = link_base

    def bars(
        self,
        name: str,
        title: str,
        unit: str,
        values: Mapping[str, Mapping[str, float]],
        frameworks: Mapping[str, str],
    ) -> str:
        """A horizontal bar per (series, label) pair; ``values[series][label]`` is the median.
        ``frameworks`` maps a label to its framework (for the colour). Returns the Markdown image."""
        rows = [
            (series, label, value) for series, by_label in values.items() for label, value in by_label.items()
        ]
        if not rows:
            return "_(no numbers to chart)_"
        self.directory.mkdir(parents=True, exist_ok=True)
        height = 0.9 + 0.32 * len(rows)
        fig, ax = plt.subplots(figsize=(8.5, height))
        names = [f"{label}  [{series}]" if series else label for series, label, _ in rows]
        colours = [COLOURS.get(frameworks.get(label, ""), "#888888") for _, label, _ in rows]
        positions = range(len(rows))
        bars = ax.barh(positions, [value for _, _, value in rows], color=colours)
        ax.bar_label(
            bars,
            labels=[f"{value:,.0f}" if value >= 100 else f"{value:.3g}" for *_, value in rows],
            padding=3,
            fontsize=8,
        )
        ax.set_yticks(list(positions), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.set_title(title, fontsize=10)
        ax.margins(x=0.15)
        fig.tight_layout()
        fig.savefig(self.directory / f"{name}.png", dpi=110)
        plt.close(fig)
        return f"![{title}]({self.link_base}/{name}.png)"
