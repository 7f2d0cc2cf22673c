"""Hostile task messages for fuzzing anything that receives them (a worker, a transport's parser).

Fuzzing starts from real messages, because a random byte string is refused by the first check
and never reaches the code behind it. :func:`sample_envelopes` records what an app really
publishes (a plain call, link and link_error callbacks, a chain, a chord header, a compressed
call, eta and expires); :func:`mutate` damages one the ways a bad publisher, a broken proxy or
an attacker would: bytes flipped, cut or inserted, values in the JSON body or the headers
replaced with wrong types, huge numbers, NaN, deep nesting or lone surrogates, headers removed,
added or not a mapping at all, unknown content types and compressions, zip bombs.

Everything is driven by a :class:`random.Random`, so a seed reproduces a run exactly: the
hypothesis tests draw the seed, the 100,000-message worker test fixes one. (The atheris harness,
tests/fuzz/atheris_decode.py, lets libFuzzer do the mutating instead.)
"""

from __future__ import annotations

import functools
import json
import logging
import random
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from ..app import App
from ..canvas.primitives import chain, chord
from ..codec import COMPRESSION_HEADER
from ..transport import Envelope

#: Every ``MessageRejected.reason`` the kernel gives a received message (``expired``: one that
#: arrived after its ``expires``, dead-lettered without running).
REJECT_REASONS = frozenset(
    {"decode", "content-type", "malformed", "over-limit", "untrusted", "unknown-task", "expired"}
)

#: Stands for a list nested far deeper than Python's recursion limit, which ``json`` cannot
#: write: :func:`hostile_json` splices the nesting into the text in its place.
_DEEP = "__kq_fuzz_deep__"
_DEEP_JSON = "[" * 5000 + "1" + "]" * 5000


def sample_envelopes(app: App, task_name: str, queue: str) -> list[Envelope]:
    """Envelopes ``app`` really publishes for ``task_name`` (which must be registered): every
    shape of task message kq sends. They are published to ``queue`` on the app's broker and
    fetched back (and acked), so they are exactly what a worker of that broker receives. The
    app needs a result backend: the chord's is where its header counts."""
    task = app.tasks[task_name]
    sig = task.s
    sig(1, x="a").apply_async(queue=queue)
    sig(2).set(link=sig(3), link_error=sig(4)).apply_async(queue=queue)
    chain(sig(5), sig(6), sig(7)).apply_async(queue=queue)
    chord([sig(8), sig(9)], sig(10)).apply_async(queue=queue)
    sig("z" * 400, nested={"list": [1, 2.5, None, True]}).apply_async(queue=queue, compression="zlib")
    sig().apply_async(
        queue=queue,
        countdown=0,
        expires=3600,
        priority=5,
        time_limit=30,
        soft_time_limit=20,
        headers={"custom": ["x", {"y": 1}]},
    )
    transport = app.new_transport()
    try:
        deliveries = transport.fetch([queue], 100, 1.0)
        while len(deliveries) < 7:  # a chord publishes two headers: 7 messages in all
            more = transport.fetch([queue], 100, 1.0)
            if not more:
                raise RuntimeError(f"only {len(deliveries)} sample messages came back from {queue}")
            deliveries += more
        transport.ack(deliveries)
    finally:
        transport.close()
    return [delivery.envelope for delivery in deliveries]


def hostile_value(rng: random.Random) -> Any:
    """One value a decoder must survive wherever it finds it."""
    kind = rng.randrange(16)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, -(2**64), 10**300])
    if kind == 3:
        return rng.choice([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324])
    if kind == 4:
        return rng.choice(["", "\ud800", "\udfff x", "\x00", "é" * 50, "1e999", "-1"])
    if kind == 5:
        return "x" * rng.choice([1025, 5000])
    if kind == 6:
        return []
    if kind == 7:
        return {}
    if kind == 8:
        return [None, 1, "a"]
    if kind == 9:
        return {"task": 1, "args": {}, "kwargs": [], "options": None}
    if kind == 10:
        if rng.random() < 0.5:
            return _DEEP
        value: Any = 1
        for _ in range(70):
            value = [value]
        return value
    if kind == 11:
        value = {}
        for _ in range(rng.choice([70, 200])):
            value = {"k": value}
        return value
    if kind == 12:
        return rng.choice(
            [
                "2024-02-30T00:00:00",
                "9999-12-31T23:59:59-23:59",
                "0001-01-01T00:00:00+01:00",
                "not a date",
                "2024-01-01T00:00:00Z",
                "P1D",
            ]
        )
    if kind == 13:
        return [rng.choice([None, 1.5, float("nan"), "1", -5]), rng.choice([None, -1, 1e300])]
    if kind == 14:
        return "\u202e" + "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(8))
    return rng.randrange(-(2**31), 2**31)


def hostile_json(value: Any) -> bytes:
    """JSON as a hostile publisher writes it: NaN allowed, surrogates escaped, and the deep
    nesting :func:`hostile_value` stands for spliced in."""
    return json.dumps(value).replace(f'"{_DEEP}"', _DEEP_JSON).encode("ascii")


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _plain_body(envelope: Envelope) -> Any:
    """The JSON value of an uncompressed sample's body (every sample is JSON, some compressed)."""
    body = envelope.body
    if isinstance(envelope.headers, dict) and envelope.headers.get(COMPRESSION_HEADER):
        inflater = zlib.decompressobj()
        body = inflater.decompress(body, 1 << 20)
        if not inflater.eof:  # a bomb, or cut short: not worth editing as JSON
            raise ValueError("not a whole zlib stream of at most 1 MB")
    return json.loads(body)


def _flip(rng: random.Random, env: Envelope) -> Envelope:
    data = bytearray(env.body)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return attrs.evolve(env, body=bytes(data))


def _truncate(rng: random.Random, env: Envelope) -> Envelope:
    return attrs.evolve(env, body=env.body[: rng.randrange(len(env.body) + 1)])


def _insert(rng: random.Random, env: Envelope) -> Envelope:
    at = rng.randrange(len(env.body) + 1)
    junk = rng.choice(
        [
            rng.randbytes(rng.randint(1, 16)),
            b"[",
            b"{",
            b'"',
            b"\\",
            b"\xff\xfe",
            b"NaN",
            b"1" * 5000,
            b"[" * 3000,
        ]
    )
    return attrs.evolve(env, body=env.body[:at] + junk + env.body[at:])


def _random_body(rng: random.Random, env: Envelope) -> Envelope:
    return attrs.evolve(env, body=rng.randbytes(rng.randint(0, 64)))


def _json_value(rng: random.Random, env: Envelope) -> Envelope:
    """One position of the body (a whole part, an argument, a workflow field) replaced."""
    body = _plain_body(env)
    path = rng.choice(list(_paths(body)))
    headers = dict(env.headers)
    headers.pop(COMPRESSION_HEADER, None)
    return attrs.evolve(env, body=hostile_json(_replace(body, path, hostile_value(rng))), headers=headers)


def _header_value(rng: random.Random, env: Envelope) -> Envelope:
    headers = dict(env.headers)
    key = rng.choice(sorted(headers))
    headers[key] = hostile_value(rng)
    return attrs.evolve(env, headers=headers)


def _header_set(rng: random.Random, env: Envelope) -> Envelope:
    """Headers missing, extra, or not a mapping at all."""
    headers = dict(env.headers)
    kind = rng.randrange(4)
    if kind == 0:
        for key in rng.sample(sorted(headers), rng.randint(1, len(headers))):
            del headers[key]
        return attrs.evolve(env, headers=headers)
    if kind == 1:
        headers.update({f"x-extra-{i}": hostile_value(rng) for i in range(rng.randint(1, 5))})
        return attrs.evolve(env, headers=headers)
    if kind == 2:
        not_a_mapping: Any = rng.choice([[], ["task", "id"], "task", 1, None, True])  # on purpose
        return attrs.evolve(env, headers=not_a_mapping)
    return attrs.evolve(env, headers={})


def _content(rng: random.Random, env: Envelope) -> Envelope:
    """The body's content type or the compression header, wrong."""
    if rng.random() < 0.5:
        return attrs.evolve(
            env,
            content_type=rng.choice(
                [
                    "application/x-python-serialize",
                    "application/x-yaml",
                    "text/plain",
                    "",
                    "application/json; charset=utf-8",
                    "APPLICATION/JSON",
                    "application/x-msgpack",
                ]
            ),
        )
    headers = dict(env.headers)
    headers[COMPRESSION_HEADER] = rng.choice(
        ["application/x-gzip", "application/x-bz2", "application/x-lzma", "application/zstd", "gzip", 7]
    )
    return attrs.evolve(env, headers=headers)


def _bomb(rng: random.Random, env: Envelope) -> Envelope:
    """A small compressed body that inflates past any sane size limit."""
    headers = {**env.headers, COMPRESSION_HEADER: "application/x-gzip"}
    return attrs.evolve(env, body=_bomb_body(rng.choice([8, 64])), headers=headers)


@functools.cache
def _bomb_body(megabytes: int) -> bytes:
    return zlib.compress(b"[" * (megabytes * 1024 * 1024), 9)


#: The mutations, with the share of messages each gets in :func:`hostile_envelopes` (zip bombs
#: are few: each costs a worker an inflation up to ``message_max_size``, as it should).
MUTATIONS: Sequence[tuple[Callable[[random.Random, Envelope], Envelope], int]] = (
    (_flip, 60),
    (_truncate, 40),
    (_insert, 40),
    (_random_body, 20),
    (_json_value, 100),
    (_header_value, 80),
    (_header_set, 32),
    (_content, 24),
    (_bomb, 1),
)
_WEIGHTS = [weight for _, weight in MUTATIONS]


def mutate(envelope: Envelope, rng: random.Random, rounds: int | None = None) -> Envelope:
    """``envelope`` damaged by one to three mutations picked with ``rng``."""
    for _ in range(rounds or rng.choice((1, 1, 1, 2, 3))):
        mutation = rng.choices(MUTATIONS, _WEIGHTS)[0][0]
        if not isinstance(envelope.headers, dict) and mutation in (
            _header_value,
            _header_set,
            _content,
            _bomb,
            _json_value,
        ):
            continue  # nothing left to edit there
        if mutation is _json_value:
            try:
                _plain_body(envelope)
            except (ValueError, RecursionError, zlib.error):
                continue  # an earlier mutation broke the JSON already
        if mutation in (_header_value, _header_set) and not envelope.headers:
            continue
        envelope = mutation(rng, envelope)
    return envelope


def hostile_envelopes(samples: Sequence[Envelope], rng: random.Random) -> Iterator[Envelope]:
    """An endless stream of mutated ``samples``."""
    while True:
        yield mutate(rng.choice(samples), rng)


class TracebackLog(logging.Handler):
    """kq's log while fuzzing: a rejection is logged at ERROR by design, a traceback means
    something raised that nothing expected. Counts records and keeps those with a traceback;
    while installed, kq's records go nowhere else (100,000 rejections would flood pytest)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.tracebacks: list[logging.LogRecord] = []
        self._logger = logging.getLogger("kq")

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 1000:  # enough to look at; the count is what matters beyond
            self.records.append(record)
        if record.exc_info or "Traceback" in record.getMessage():
            self.tracebacks.append(record)

    def __enter__(self) -> TracebackLog:
        self._logger.addHandler(self)
        self._propagate, self._logger.propagate = self._logger.propagate, False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate

    def report(self, limit: int = 3) -> str:
        """The first tracebacks, formatted, for an assertion message."""
        return "\n".join(logging.Formatter().format(r) for r in self.tracebacks[:limit])
