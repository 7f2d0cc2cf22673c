"""The scenarios, in the order they run. Each module has the same shape:

``ID``, ``TITLE``; ``PROFILE_ROLES`` (which processes to profile: "worker", "client");
``variants(quick)`` the configurations to run; ``run(ctx, variant)`` one measured run returning
numbers (and texts); ``report(results, charts, quick)`` its section of the report, with the
issue's target checks.
"""

from __future__ import annotations

from types import ModuleType

from scenarios import s1_drain, s2_publish, s3_roundtrip, s4_fairness, s5_chord, s6_memory

SCENARIOS: dict[str, ModuleType] = {
    m.ID: m for m in (s1_drain, s2_publish, s3_roundtrip, s4_fairness, s5_chord, s6_memory)
}
