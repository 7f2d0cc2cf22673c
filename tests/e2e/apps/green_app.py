"""The app the green-pool end-to-end tests run in ``kq worker -P gevent|eventlet`` processes.

At import it notes which library had already monkey-patched the process: a green pool's
``PoolSpec.setup`` must patch before the app (and whatever it imports) is loaded. It looks
only at what is already imported, so importing it changes nothing. Configured only through
KQ_* variables.
"""

import sys
import time

import kq
from kq import App
from kq.exceptions import SoftTimeLimitExceeded


def _patched_at_import() -> dict[str, bool]:
    """``{library: socket patched}`` for each green library already imported."""
    found = {}
    if "gevent.monkey" in sys.modules:
        found["gevent"] = sys.modules["gevent.monkey"].is_module_patched("socket")
    if "eventlet.patcher" in sys.modules:
        found["eventlet"] = sys.modules["eventlet.patcher"].is_monkey_patched("socket")
    return found


PATCHED_AT_IMPORT = _patched_at_import()

app = App("green")


@app.task(name="green.patched_at_import")
def patched_at_import() -> dict[str, bool]:
    return PATCHED_AT_IMPORT


@app.task(name="green.nap")
def nap(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


@app.task(name="green.whoami", bind=True)
def whoami(self, seconds: float) -> bool:
    """Whether ``kq.current_task`` still names this task after yielding to other greenlets."""
    before = kq.current_task.request.id
    time.sleep(seconds)
    return before == kq.current_task.request.id == self.request.id


@app.task(name="green.spin")
def spin(seconds: float) -> str:
    """Computes without ever yielding to the hub."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "never stopped"


@app.task(name="green.soft")
def soft(seconds: float) -> str:
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded as exc:
        return f"caught {type(exc).__name__}"
    return "slept through"
