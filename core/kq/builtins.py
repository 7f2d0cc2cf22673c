"""kq's built-in plugin: the json and pickle serializers, the zlib, bz2 and lzma compressions,
the canvas primitives (chain, group, chord, join, xmap, xstarmap, chunks) and the tasks the
canvas needs in every worker.

It is registered through the ``kq`` entry point of the core distribution, exactly like any
third-party plugin, so ``kq plugins`` shows it and ``KQ_DISABLE_PLUGINS`` can turn it off.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

from .beat.crontab import crontab
from .beat.recurrence import rrule
from .beat.schedule import every
from .beat.solar import solar
from .canvas import tasks as canvas_tasks
from .canvas.mapping import chunks, xmap, xstarmap
from .canvas.primitives import chain, chord, group, join
from .codec import CompressionSpec, builtin_compressions
from .hookspecs import hookimpl
from .serialization import SerializerSpec, to_plain
from .specs import CanvasPrimitiveSpec, ScheduleTypeSpec

#: Built once: ``json.dumps`` with options would build a new encoder for every message.
_encode = json.JSONEncoder(separators=(",", ":"), default=to_plain).encode


def json_dumps(obj: Any) -> bytes:
    return _encode(obj).encode("utf-8")


def json_loads(data: bytes) -> Any:
    return json.loads(data)


@hookimpl
def kq_serializers() -> list[SerializerSpec]:
    return [
        SerializerSpec(
            name="json",
            content_type="application/json",
            dumps=json_dumps,
            loads=json_loads,
            description="JSON (the default; safe for untrusted input)",
        ),
        SerializerSpec(
            name="pickle",
            content_type="application/x-python-serialize",
            dumps=lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL),
            loads=pickle.loads,
            content_encoding="binary",
            safe=False,
            description="pickle: runs code when loading; refused unless listed in accept_content",
        ),
    ]


@hookimpl
def kq_compressions() -> list[CompressionSpec]:
    return builtin_compressions()


@hookimpl
def kq_canvas_primitives() -> list[CanvasPrimitiveSpec]:
    return [
        CanvasPrimitiveSpec("chain", chain.from_dict, "steps one after another"),
        CanvasPrimitiveSpec("group", group.from_dict, "members in parallel"),
        CanvasPrimitiveSpec("chord", chord.from_dict, "a group, then a body with its results"),
        CanvasPrimitiveSpec("join", join.from_dict, "a group's results as one step's result"),
        CanvasPrimitiveSpec("xmap", xmap.from_dict, "a task per item, in one message"),
        CanvasPrimitiveSpec("xstarmap", xstarmap.from_dict, "a task per argument tuple, in one message"),
        CanvasPrimitiveSpec("chunks", chunks.from_dict, "starmaps of n items, as a group"),
    ]


@hookimpl
def kq_schedule_types() -> list[ScheduleTypeSpec]:
    return [
        ScheduleTypeSpec("every", every, "every N seconds (interval=), slots counted from 1970"),
        ScheduleTypeSpec("crontab", crontab, "cron fields in a time zone's wall clock"),
        ScheduleTypeSpec("solar", solar, "a sun event (sunrise, sunset, ...) at a latitude/longitude"),
        ScheduleTypeSpec("rrule", rrule, "an iCalendar (RFC 5545) recurrence rule in a time zone"),
    ]


@hookimpl
def kq_app_configure(app: Any) -> None:
    canvas_tasks.register(app)
