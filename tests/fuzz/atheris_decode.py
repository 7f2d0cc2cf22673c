"""Coverage-guided fuzzing of what a worker does with received bytes (atheris, libFuzzer).

Not collected by pytest: it runs until stopped, or for ``-max_total_time`` seconds::

    pip install atheris
    mkdir -p fuzz-corpus
    python tests/fuzz/atheris_decode.py -max_total_time=120 fuzz-corpus

An empty corpus directory is first seeded with real messages (a plain call, callbacks, a chain,
a chord header, a compressed call), so that mutation starts from the shapes workers receive.

Each input is split into headers and a body: the first line is the headers as JSON (anything
not a JSON object is kept as it parses, so non-mapping headers are covered too), the rest the
body. ``codec.open`` and ``decode_task`` must return a task message or raise
``MessageRejected`` with a known reason; anything else is a crash libFuzzer reports and saves.
The kq-redis parser gets the whole input as a raw Redis value.
"""

import json
import pathlib
import sys
import tempfile

import atheris

from kq import App
from kq.exceptions import MessageRejected
from kq.protocol import TaskMessage, decode_task, encode_task
from kq.testing.fuzz import REJECT_REASONS
from kq.transport import Envelope

try:
    from kq_redis import wire
except ImportError:  # kq-redis not installed: fuzz the kernel alone
    wire = None

APP = App(broker=f"sqlite:///{tempfile.mkdtemp()}/kq.sqlite3")
CONTENT_TYPES = ["application/json", "application/x-python-serialize", "text/plain"]


def seed(corpus: pathlib.Path) -> None:
    """Real messages as inputs: a content-type byte, the headers' JSON line, the body."""
    step = {"task": "t", "args": [1], "kwargs": {}, "options": {"task_id": "c"}}
    messages = [
        TaskMessage(id="a", task="t", args=(1,), kwargs={"x": "y"}),
        TaskMessage(id="b", task="t", callbacks=[step], errbacks=[step]),
        TaskMessage(id="c", task="t", chain=[step, step]),
        TaskMessage(id="d", task="t", group="g", chord=step),
    ]
    for i, message in enumerate(messages):
        envelope = APP.codec.seal(encode_task(message, APP.serializers, "json"), "zlib" if i == 3 else None)
        data = b"\x00" + json.dumps(dict(envelope.headers)).encode() + b"\n" + envelope.body
        (corpus / f"seed-{i}").write_bytes(data)
        if wire is not None:
            (corpus / f"seed-redis-{i}").write_bytes(wire.encode(envelope, "q"))


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    content_type = CONTENT_TYPES[fdp.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]
    head, _, body = fdp.ConsumeBytes(fdp.remaining_bytes()).partition(b"\n")
    try:
        headers = json.loads(head)
    except (ValueError, RecursionError):
        headers = {"task": "fuzz.sink", "id": head.decode("latin-1")}
    envelope = Envelope(body, content_type, headers=headers)
    try:
        decode_task(APP.codec.open(envelope), APP.serializers, APP.accept, APP.codec.limits.max_depth)
    except MessageRejected as exc:
        if exc.reason not in REJECT_REASONS or not exc.detail:
            raise AssertionError(f"rejected with an unknown reason: {exc!r}") from exc
    if wire is not None:
        wire.decode(data)
        wire.message_priority(data)
        wire.dead_letter_copy(data, "q", "fuzz")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        path = pathlib.Path(arg)
        if not arg.startswith("-") and path.is_dir() and not any(path.iterdir()):
            seed(path)
    atheris.instrument_all()  # kq is installed editable: instrument what is loaded, not imports
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
