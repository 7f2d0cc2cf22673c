"""Runs the tests that need a greened process in one, greened before anything else is imported
as ``kq worker -P eventlet`` does; greening this pytest process would change every other
plugin's tests."""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent
SCRIPT = """
import eventlet
eventlet.monkey_patch()
import sys, pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_patched_tests_pass_in_a_greened_process() -> None:
    paths = [str(HERE / "test_contract.py"), str(HERE / "test_green_threads.py")]
    # Without hypothesis's and anyio's pytest plugins: at the end of a run the first loads the
    # "hypothesis" entry points, trio's among them (selenium brings trio), and the second imports
    # trio at start-up (FastAPI brings anyio); trio cannot import under eventlet.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-p",
            "no:anyio",
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = done.stdout + done.stderr
    print(report)
    assert done.returncode == 0, report
    assert "runs monkey-patched" not in report, "the subprocess was not greened"
