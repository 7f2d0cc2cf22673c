"""A FastAPI app whose ``async`` endpoints publish kq tasks and await their results without
blocking the event loop.

    POST /squares {"x": 3, "delay": 0.5}   -> 202 {"task_id": ..., "result_url": ...}
    GET  /tasks/{task_id}?wait=5            -> {"state": ..., "value": ...}, waiting up to 5 s
    POST /squares/sum {"xs": [1, 2, 3]}     -> {"squares": [1, 4, 9], "total": 14}
    POST /additions {"x": 1, "y": 2}        -> {"value": 3}

Run it with ``uvicorn fastapi_example_app:api`` and a worker with
``kq worker -A fastapi_example_tasks:kq_app -P asyncio`` (see README.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi_example_tasks import add, kq_app, slow_square
from pydantic import BaseModel, Field

import kq
from kq import states


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    yield
    await asyncio.to_thread(kq_app.close)  # the broker and backend connections


api = FastAPI(title="kq FastAPI example", lifespan=lifespan)


class Square(BaseModel):
    x: int
    delay: float = Field(0.0, ge=0, le=60)


class Squares(BaseModel):
    xs: list[int] = Field(min_length=1, max_length=1000)
    delay: float = Field(0.0, ge=0, le=60)
    timeout: float = Field(30.0, gt=0, le=120)


class Addition(BaseModel):
    x: int
    y: int


class Sent(BaseModel):
    task_id: str
    result_url: str


class TaskState(BaseModel):
    task_id: str
    state: str
    value: Any = None
    error: str | None = None


@api.post("/squares", status_code=202)
async def send_square(body: Square) -> Sent:
    """Publish and answer at once: ``delay_async`` publishes in a thread, the loop stays free."""
    result = await slow_square.delay_async(body.x, body.delay)
    return Sent(task_id=result.id, result_url=api.url_path_for("task_result", task_id=result.id))


@api.get("/tasks/{task_id}")
async def task_result(task_id: str, wait: float = Query(0.0, ge=0, le=30)) -> TaskState:
    """The task's state and value; with ``wait``, first wait up to that many seconds for it to
    finish (``get_async``: the wait runs in a thread, other requests go on meanwhile)."""
    result = kq_app.AsyncResult(task_id)
    if wait:
        try:
            await result.get_async(timeout=wait, propagate=False)
        except kq.TimeoutError:
            pass  # not finished yet: answer with the state it is in
    state = await asyncio.to_thread(lambda: result.state)
    if state == states.SUCCESS:
        return TaskState(task_id=task_id, state=state, value=result.result)
    if state in states.EXCEPTION_STATES:
        return TaskState(task_id=task_id, state=state, error=repr(result.result))
    return TaskState(task_id=task_id, state=state)


@api.post("/squares/sum")
async def sum_of_squares(body: Squares) -> dict[str, Any]:
    """Fan out one task per number, then await them all in one request: the publishes run
    concurrently, and one ``GroupResult`` waits for every result (one thread, not one each)."""
    results = await asyncio.gather(*(slow_square.delay_async(x, body.delay) for x in body.xs))
    try:
        squares = await kq.GroupResult(None, results, app=kq_app).get_async(timeout=body.timeout)
    except kq.TimeoutError as exc:
        raise HTTPException(504, detail=str(exc)) from None
    return {"squares": squares, "total": sum(squares)}


@api.post("/additions")
async def addition(body: Addition) -> dict[str, int]:
    """Publish, then await the result within the request, as a short call to a worker."""
    result = await add.delay_async(body.x, body.y)
    try:
        return {"value": await result.get_async(timeout=10)}
    except kq.TimeoutError as exc:
        raise HTTPException(504, detail=str(exc)) from None
