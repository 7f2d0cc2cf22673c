"""Runs the tests that need a monkey-patched process in one, the way ``kq worker -P gevent``
patches: before anything else is imported. Patching this pytest process instead would change
every other plugin's tests."""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent
PATCHED = ["test_contract.py", "test_greenlets.py"]
SCRIPT = """
from gevent import monkey
monkey.patch_all()
import sys, pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_patched_tests_pass_in_a_monkey_patched_process() -> None:
    args = ["-q", "-rs", "-p", "no:cacheprovider", *(str(HERE / name) for name in PATCHED)]
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=600)
    report = done.stdout + done.stderr
    print(report)
    assert done.returncode == 0, report
    assert "runs monkey-patched" not in report, "the subprocess was not patched"
