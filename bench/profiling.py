"""Where the time goes: py-spy's samples of a profiled run, reduced to the top functions.

py-spy records on-CPU samples (threads waiting on a socket or a lock are not sampled) of the
process and its children, as collapsed stacks: ``process PID:"cmd";frame;...;frame COUNT`` (a
child's stacks start with its parent's ``process`` entry, then its own), each frame
``function (file:line)``. Self time is the innermost frame; total time any frame on the
stack; the package is the file's first path component as py-spy prints it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import attrs
from tables import paragraphs, table

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")
TOP = 15


@attrs.frozen
class Profile:
    """Sample counts of one role (worker or client) of one profiled run."""

    role: str
    samples: int
    #: Samples with the import machinery on the stack: start-up, not steady work.
    importing: int
    by_process: tuple[tuple[str, int], ...]
    by_package: tuple[tuple[str, int], ...]
    self_time: tuple[tuple[str, int], ...]
    #: Total time of kq's own functions (packages kq and kq_*), the ones kq can change.
    kq_total: tuple[tuple[str, int], ...]

    def markdown(self) -> str:
        if not self.samples:
            return f"**{self.role}**: no samples (the process was idle, or py-spy could not attach)."

        def pct(count: int) -> str:
            return f"{100 * count / self.samples:.1f} %"

        def shares(pairs: Iterable[tuple[str, int]]) -> str:
            return ", ".join(f"{name} {pct(count)}" for name, count in pairs)

        return paragraphs(
            f"**{self.role}**: {self.samples:,} samples on CPU; by process: {shares(self.by_process)}; "
            f"importing modules (start-up): {pct(self.importing)}.",
            f"By package (self time): {shares(self.by_package[:12])}.",
            table(("function (self time)", "share"), [[f"`{name}`", pct(n)] for name, n in self.self_time]),
            table(
                ("kq function (total time: itself and what it calls)", "share"),
                [[f"`{name}`", pct(n)] for name, n in self.kq_total],
            )
            if self.kq_total
            else "",
        )


@attrs.frozen
class ProfiledRun:
    """kq's side of one scenario variant run under py-spy, and the missed targets it explains."""

    heading: str
    missed: tuple[str, ...]
    profiles: tuple[Profile, ...]


def _frame(text: str) -> tuple[str, str]:
    """(``function (file)``, package) of one frame."""
    match = _FRAME.match(text)
    if match is None:
        return text, text
    path = match["file"]
    return f"{match['function']} ({path})", path.split("/", 1)[0].removesuffix(".py")


def summarize(role: str, paths: Iterable[Path]) -> Profile:
    processes: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    kq_total: Counter[str] = Counter()
    samples = importing = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            entries = stack.split(";")
            processes_in = [e for e in entries if e.startswith("process ")]
            frames = entries[len(processes_in) :]
            if not processes_in or not frames or not count_text.isdigit():
                continue
            count = int(count_text)
            parsed = [_frame(f) for f in frames]
            samples += count
            processes[_process_name(processes_in[-1], child=len(processes_in) > 1)] += count
            packages[parsed[-1][1]] += count
            self_time[parsed[-1][0]] += count
            if any(package.startswith("<frozen importlib") for _, package in parsed):
                importing += count
            for function in {f for f, package in parsed if package == "kq" or package.startswith("kq_")}:
                kq_total[function] += count
    return Profile(
        role,
        samples,
        importing,
        tuple(processes.most_common()),
        tuple(packages.most_common()),
        tuple(self_time.most_common(TOP)),
        tuple(kq_total.most_common(TOP)),
    )


def _process_name(text: str, child: bool) -> str:
    """``process 12:"/venv/bin/python -m kq worker ..."`` -> ``pid 12 (kq worker)``."""
    match = re.match(r'process (\d+):"(.*)"', text)
    if match is None:
        return text
    words = [w.rsplit("/", 1)[-1] for w in match[2].split()]
    if len(words) > 1 and words[0].startswith("python"):
        words = words[2:] if words[1] == "-m" else words[1:]
    return f"pid {match[1]} ({' '.join(words[:2])}{', a child' if child else ''})"
