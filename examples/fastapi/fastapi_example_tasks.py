"""The example's kq App and tasks: what ``kq worker -A fastapi_example_tasks:kq_app -P asyncio``
loads. The worker imports no web framework; the API imports this module to send the tasks.

The broker and result backend come from ``KQ_BROKER_URL`` and ``KQ_RESULT_BACKEND`` in the
environment (kq reads them), else the embedded SQLite file ``kq.sqlite3`` in the current
directory.
"""

from __future__ import annotations

import asyncio

import kq

kq_app = kq.App("fastapi_example")


@kq_app.task
async def slow_square(x: int, delay: float = 0.0) -> int:
    """``x * x`` after awaiting ``delay`` seconds: an ``async def`` task, which the asyncio pool
    runs as a coroutine, so a worker awaits hundreds of them at once (each stands for a call to
    another service)."""
    await asyncio.sleep(delay)
    return x * x


@kq_app.task
def add(x: int, y: int) -> int:
    """A plain ``def`` task: the asyncio pool runs it in a thread of its own."""
    return x + y
