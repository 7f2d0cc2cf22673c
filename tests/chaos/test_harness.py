"""The chaos harness's own verdicts: what counts as lost, repeated, and why a repeat happened."""

from .harness import Run, check, explain


def test_check_finds_lost_and_repeated_tasks():
    runs = [Run("a", False, 1, 10.0), Run("b", False, 1, 11.0), Run("a", True, 2, 12.0)]
    verdict = check(["a", "b", "c"], runs)
    assert verdict.lost == {"c"}
    assert verdict.duplicates == {"a": (runs[0], runs[2])}
    assert (verdict.published, verdict.runs, verdict.repeats) == (3, 3, 1)


def test_explain_blames_the_fault_between_a_run_and_its_repeat():
    runs = [
        Run("killed", False, 1, 10.0),
        Run("killed", True, 2, 20.0),  # pid 1 died at 11
        # pid 5, a pool child, finished its task just after its worker process died at 40
        Run("orphan", False, 5, 40.01),
        Run("orphan", True, 2, 50.0),
        Run("late kill", False, 3, 15.0),
        Run("late kill", True, 2, 30.0),  # pid 3 died at 25
        Run("restart", False, 4, 10.0),
        Run("restart", True, 2, 14.0),  # outage 12-13
        Run("nothing", False, 4, 20.0),
        Run("nothing", True, 2, 22.0),
    ]
    reasons = explain(
        check({r.task_id for r in runs}, runs), killed={1: 11.0, 3: 25.0, 5: 40.0}, outages=[(12.0, 13.0)]
    )
    assert {reason: [before.task_id for before, _ in pairs] for reason, pairs in reasons.items()} == {
        "killed before the ack": ["killed", "orphan"],
        "broker restart": ["restart"],
        "unexplained": ["late kill", "nothing"],
    }
