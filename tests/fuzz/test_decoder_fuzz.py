"""Property tests: whatever bytes and headers arrive, the codec and the decoder either return a
task message or reject it with a known reason, quickly, and never raise anything else.

Inputs are real messages (plain, linked, chain, chord, compressed) mutated by
:mod:`kq.testing.fuzz`, plus headers and bodies built by hypothesis from scratch. kq-redis'
parser of raw Redis bytes has the same kind of tests in its own package.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kq import App
from kq.exceptions import MessageRejected
from kq.protocol import KNOWN_HEADERS, TaskMessage, decode_task
from kq.testing.fuzz import REJECT_REASONS, hostile_json, hostile_value, mutate, sample_envelopes
from kq.transport import Envelope

#: Deadline 2 s per example: generous on a loaded 2-core CI machine, yet a hang still fails.
#: No example database: a failure prints its example (seeds are plain integers) to reproduce.
FUZZ = settings(max_examples=400, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'kq.sqlite3'}"
    app = App(broker=url, result_backend=url)

    @app.task(name="fuzz.sink")
    def sink(*args, **kwargs):
        return None

    app.samples = sample_envelopes(app, "fuzz.sink", "samples")
    return app


def receive(app: App, envelope: Envelope) -> TaskMessage | MessageRejected:
    """What a worker does with ``envelope`` before running it; any other exception escapes."""
    try:
        return decode_task(app.codec.open(envelope), app.serializers, app.accept, app.codec.limits.max_depth)
    except MessageRejected as exc:
        return exc


def check(outcome: TaskMessage | MessageRejected) -> None:
    if isinstance(outcome, MessageRejected):
        assert outcome.reason in REJECT_REASONS and outcome.detail
    else:
        assert isinstance(outcome, TaskMessage) and outcome.id and outcome.task


def test_the_samples_are_accepted(app):
    outcomes = [receive(app, envelope) for envelope in app.samples]
    assert all(isinstance(outcome, TaskMessage) for outcome in outcomes), outcomes
    assert any(outcome.chain for outcome in outcomes) and any(o.chord for o in outcomes)
    assert any(outcome.callbacks and outcome.errbacks for outcome in outcomes)


@FUZZ
@given(seed=st.integers(0, 2**32), which=st.integers(0, 100))
def test_mutated_real_messages(app, seed, which):
    envelope = app.samples[which % len(app.samples)]
    check(receive(app, mutate(envelope, random.Random(seed))))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(
    body=st.binary(max_size=512),
    content_type=st.sampled_from(["application/json", "application/x-python-serialize", "", "text/plain"]),
)
def test_random_bodies(app, body, content_type):
    headers = {"task": "fuzz.sink", "id": "x"}
    check(receive(app, Envelope(body, content_type, headers=headers)))


@FUZZ
@given(data=st.data())
def test_headers_of_wrong_types(app, data):
    """Every known header, and the compression header, given any JSON value (or missing)."""
    envelope = data.draw(st.sampled_from(app.samples))
    headers = dict(envelope.headers)
    for key in data.draw(st.lists(st.sampled_from(sorted(KNOWN_HEADERS | {"compression"})), max_size=4)):
        if data.draw(st.booleans()):
            headers[key] = data.draw(json_values)
        else:
            headers.pop(key, None)
    headers.update(data.draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)))
    check(receive(app, Envelope(envelope.body, envelope.content_type, headers=headers)))


@FUZZ
@given(headers=json_values)
def test_headers_that_are_not_a_mapping(app, headers):
    outcome = receive(app, Envelope(app.samples[0].body, "application/json", headers=headers))
    if not isinstance(headers, dict):
        assert isinstance(outcome, MessageRejected) and outcome.reason == "malformed"


@FUZZ
@given(body=json_values, seed=st.integers(0, 2**32))
def test_bodies_of_any_json_shape(app, body, seed):
    value = hostile_value(random.Random(seed)) if seed % 3 == 0 else body
    raw = hostile_json(value)
    check(receive(app, Envelope(raw, "application/json", headers={"task": "fuzz.sink", "id": "i"})))
