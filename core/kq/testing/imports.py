"""What loading the plugins imports, for tests that a plugin's heavy modules wait for first use.

Every kq process (each worker and its pool children, each ``kq`` command, each client) loads
every installed plugin, so a module imported there is paid for everywhere. Only a fresh
interpreter can tell what loading imports: the test's own process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
from kq.plugins import get_plugins
get_plugins().check()  # builds every registry, calling every provider hook
print(json.dumps(sorted(name for name in sys.argv[1:] if name in sys.modules)))
"""


def imported_on_load(*modules: str) -> list[str]:
    """Which of ``modules`` a new interpreter has imported once it has loaded the plugins and
    built their registries, as every kq process does; ``[]`` is what a light plugin gets."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        raise RuntimeError(f"loading the plugins failed:\n{done.stderr}")
    modules_imported: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules_imported
