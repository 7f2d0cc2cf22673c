"""Task messages in Celery's protocol 2, and what decoding refuses."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from kq.exceptions import ContentDisallowed, MessageRejected, TaskRevoked
from kq.plugins import get_plugins
from kq.protocol import (
    ResultMeta,
    TaskMessage,
    decode_result,
    decode_task,
    encode_result,
    encode_task,
    exception_from_meta,
    exception_to_meta,
)
from kq.states import SUCCESS
from kq.transport import Envelope

JSON = frozenset({"application/json"})


@pytest.fixture
def serializers():
    return get_plugins().serializers()


def test_encode_matches_celery_protocol_2(serializers):
    eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    message = TaskMessage(
        id="abc",
        task="proj.add",
        args=(1, 2),
        kwargs={"z": 3},
        eta=eta,
        timelimit=(10, 5),
        retries=2,
        origin="1@host",
        priority=7,
        extra_headers={"custom": "x"},
    )
    env = encode_task(message, serializers, "json")
    h = env.headers
    assert (h["lang"], h["task"], h["id"], h["root_id"], h["retries"]) == ("py", "proj.add", "abc", "abc", 2)
    assert h["timelimit"] == [10, 5]
    assert h["eta"] == "2030-01-02T03:04:05+00:00"
    assert h["argsrepr"] == "(1, 2)" and h["kwargsrepr"] == "{'z': 3}"
    assert h["custom"] == "x"
    assert env.content_type == "application/json" and env.correlation_id == "abc"
    assert env.priority == 7
    args, kwargs, embed = json.loads(env.body)
    assert args == [1, 2] and kwargs == {"z": 3}
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_decode_round_trip(serializers):
    message = TaskMessage(
        id="i",
        task="t",
        args=(1,),
        kwargs={"a": [1]},
        expires=datetime.now(timezone.utc) + timedelta(seconds=5),
        extra_headers={"custom": 1},
    )
    decoded = decode_task(encode_task(message, serializers, "json"), serializers, JSON)
    assert decoded.args == (1,) and decoded.kwargs == {"a": [1]}
    assert decoded.expires == message.expires.replace(microsecond=decoded.expires.microsecond)
    assert decoded.extra_headers == {"custom": 1}
    assert decoded.root_id == "i"


def _env(body: bytes, headers=None, content_type="application/json"):
    return Envelope(
        body=body, content_type=content_type, headers={"task": "t", "id": "1"} if headers is None else headers
    )


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (_env(b"{not json"), "decode"),
        (_env(b"[[], {}, {}]", headers={}), "malformed"),
        (_env(b"[[], {}, {}]", headers={"task": 5, "id": "1"}), "malformed"),
        (_env(b'{"args": []}'), "malformed"),
        (_env(b"[{}, {}, {}]"), "malformed"),
        (_env(b"[[], [], {}]"), "malformed"),
        (_env(b"[[], {}, []]"), "malformed"),
        (_env(b"[[], {}, {}]", headers={"task": "t", "id": "1", "eta": "yesterday"}), "malformed"),
        (_env(b"[[], {}, {}]", headers={"task": "t", "id": "1", "timelimit": "x"}), "malformed"),
        (_env(b"[[], {}, {}]", headers={"task": "t", "id": "1", "retries": "2"}), "malformed"),
        (_env(b"\x80\x04K\x01.", content_type="application/x-python-serialize"), "content-type"),
        (_env(b"x", content_type="text/unknown"), "content-type"),
    ],
)
def test_decode_refuses(serializers, envelope, reason):
    with pytest.raises(MessageRejected) as info:
        decode_task(envelope, serializers, JSON)
    assert info.value.reason == reason


def test_pickle_is_decoded_only_when_accepted(serializers):
    message = TaskMessage(id="p", task="t", args=(1,))
    env = encode_task(message, serializers, "pickle")
    with pytest.raises(ContentDisallowed):
        decode_task(env, serializers, JSON)
    accept = serializers.accept_set(["json", "pickle"])
    assert decode_task(env, serializers, accept).args == (1,)


def test_result_meta_round_trip_in_celery_shape(serializers):
    meta = ResultMeta(
        task_id="r",
        state=SUCCESS,
        result={"x": 1},
        date_done=datetime(2030, 1, 1, tzinfo=timezone.utc),
        name="t",
    )
    payload = encode_result(meta, serializers, "json")
    raw = json.loads(payload)
    assert raw["status"] == "SUCCESS" and raw["result"] == {"x": 1} and raw["task_id"] == "r"
    assert decode_result(payload, serializers, "json") == meta


class Custom(Exception):
    pass


def test_exceptions_are_rebuilt_only_from_known_types():
    rebuilt = exception_from_meta(exception_to_meta(ValueError("bad", 3)))
    assert type(rebuilt) is ValueError and rebuilt.args == ("bad", 3)
    rebuilt = exception_from_meta(exception_to_meta(Custom("mine")))
    assert type(rebuilt) is Custom
    remote = exception_from_meta(
        {"exc_type": "Boom", "exc_module": "not.imported.here", "exc_message": ["x"]}
    )
    assert type(remote).__name__ == "TaskError" and "not.imported.here.Boom" in str(remote)
    # A name that is not an exception class is never instantiated.
    harmless = exception_from_meta({"exc_type": "system", "exc_module": "os", "exc_message": ["echo hi"]})
    assert type(harmless).__name__ == "TaskError"


def test_a_revoked_task_is_stored_under_celerys_name_and_read_back_as_kqs():
    """So that a Celery client's ``get()`` raises its own ``TaskRevokedError``."""
    meta = exception_to_meta(TaskRevoked("task expired"))
    assert (meta["exc_type"], meta["exc_module"]) == ("TaskRevokedError", "celery.exceptions")
    rebuilt = exception_from_meta(meta)
    assert type(rebuilt) is TaskRevoked and rebuilt.args == ("task expired",)
