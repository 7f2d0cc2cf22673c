"""The app the asyncio-pool and soft-time-limit end-to-end tests run in real worker processes.

Configured only through KQ_* variables, like e2e_app.
"""

import asyncio
import threading
import time

from kq import App
from kq.exceptions import SoftTimeLimitExceeded

app = App("async_e2e")


def spin(seconds: float) -> int:
    """Compute in Python for up to ``seconds``; returns how many rounds it did."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
    return rounds


@app.task(name="async_app.nap")
async def nap(n: int) -> int:
    await asyncio.sleep(0.5)
    return 2 * n


@app.task(name="async_app.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="async_app.blocking_double")
def blocking_double(n: int) -> dict:
    time.sleep(0.2)  # blocks its thread, not the event loop
    return {"value": 2 * n, "thread": threading.current_thread().name}


@app.task(name="async_app.cleanup_on_soft_limit", soft_time_limit=1)
def cleanup_on_soft_limit() -> str:
    try:
        spin(30)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "never interrupted"


@app.task(name="async_app.spin_in_python")
def spin_in_python(seconds: float) -> dict:
    """Computes in Python long enough for a stray asynchronous exception to land."""
    return {"rounds": spin(seconds), "thread": threading.current_thread().name}
