"""Draw the soak test's RSS samples (the CSV of tests/chaos/test_soak.py) as a PNG.

    KQ_SOAK_CSV=/tmp/soak.csv python -m pytest tests/chaos/test_soak.py -s
    python tests/chaos/plot_soak.py /tmp/soak.csv docs/images/soak-rss.png

Needs matplotlib (bench/requirements.txt), which the test environment does not have: the test
only writes the CSV, and this script is run by hand to refresh the chart in docs/reliability.md.
The two medians the test compares are drawn over the windows they were taken from, so the chart
shows the verdict as well as the curve.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="the samples, as written by test_soak.py")
    parser.add_argument("png", type=Path, help="where to write the chart")
    parser.add_argument("--title", default="kq worker RSS during the soak (one process, Redis)")
    args = parser.parse_args()

    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    done = [int(r["tasks_done"]) / 1000 for r in rows]
    rss = [float(r["rss_mb"]) for r in rows]
    phase = [r["phase"] for r in rows]

    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    ax.plot(done, rss, color="#2b7bba", linewidth=1.4, marker=".", markersize=3, label="RSS, every second")
    warm = [d for d, p in zip(done, phase, strict=True) if p == "warm-up"]
    if warm:
        ax.axvspan(0, max(warm), color="#bbbbbb", alpha=0.35, label="warm-up (first 20% of tasks)")
    medians = {}
    for name, colour in (("start-window", "#8cb24a"), ("end-window", "#e08a2c")):
        xs = [d for d, p in zip(done, phase, strict=True) if p == name]
        medians[name] = statistics.median(r for r, p in zip(rss, phase, strict=True) if p == name)
        ax.hlines(
            medians[name],
            min(xs),
            max(xs),
            colors=colour,
            linewidth=3,
            label=f"median, {name.split('-')[0]} ({medians[name]:.1f} MB)",
        )
    growth = medians["end-window"] / medians["start-window"] - 1
    ax.axhline(
        medians["start-window"] * 1.05,
        color="#c0392b",
        linestyle="--",
        linewidth=1,
        label="the test's limit (+5%)",
    )
    ax.set_xlabel("tasks done (thousands)")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(0, max(rss) * 1.25)
    ax.set_title(f"{args.title}: growth after warm-up {growth:+.2%}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)
    plt.close(fig)
    print(f"{args.png}: {len(rows)} samples, growth after warm-up {growth:+.2%}")


if __name__ == "__main__":
    main()
