"""kq.deadletter on the embedded SQLite broker: reading leaves dead letters in place and in order,
replay filters by id, reason and count, and strips the dead-letter headers."""

import pathlib
from collections.abc import Iterator

import pytest

from kq import App, deadletter
from kq.testing.contracts.transport import drain, envelope
from kq.transport import DEAD_LETTER_HEADERS, Transport


@pytest.fixture
def transport(tmp_path: pathlib.Path) -> Iterator[Transport]:
    url = f"sqlite:///{tmp_path / 'kq.sqlite3'}"
    app = App("dlq", broker=url, backend=url)
    transport = app.new_transport()
    yield transport
    transport.close()
    app.close()


def refuse(transport: Transport, reasons: list[str]) -> list[str]:
    """Publish one message per reason to ``work``, refuse each with it; return their ids."""
    for n in range(len(reasons)):
        transport.publish("work", envelope(n))
    got = drain(transport, ["work"], len(reasons), ack=False)
    for delivery, reason in zip(got, reasons, strict=True):
        transport.reject(delivery, requeue=False, reason=reason)
    return [delivery.envelope.headers["id"] for delivery in got]


def test_peek_and_find_leave_the_dead_letters_in_place_and_in_order(transport: Transport) -> None:
    ids = refuse(transport, ["unknown-task: a", "decode: b", "expired: c"])
    for _ in range(2):
        letters = deadletter.peek(transport, "work.dlq")
        assert [letter.task_id for letter in letters] == ids
    assert [letter.task_id for letter in deadletter.peek(transport, "work.dlq", 2)] == ids[:2]
    found = deadletter.find(transport, "work.dlq", ids[1])
    assert found is not None and found.reason == "decode: b" and found.original_queue == "work"
    assert found.body_size == len(b'{"n": 1}') and found.task == "contract.test"
    assert deadletter.find(transport, "work.dlq", "nobody") is None
    assert transport.depth("work.dlq") == 3


def test_replay_filters_by_id_reason_and_limit_and_strips_the_headers(transport: Transport) -> None:
    ids = refuse(transport, ["unknown-task: a", "decode: b", "unknown-task: c", "expired: d"])
    assert [x.task_id for x in deadletter.replay(transport, "work.dlq", ids=[ids[1]])] == [ids[1]]
    replayed = deadletter.replay(transport, "work.dlq", reasons=["unknown-task"], limit=1)
    assert [x.task_id for x in replayed] == [ids[0]]
    back = drain(transport, ["work"], 2)
    assert [d.envelope.headers["id"] for d in back] == [ids[1], ids[0]]
    assert not any(name in back[0].envelope.headers for name in DEAD_LETTER_HEADERS)
    assert [x.task_id for x in deadletter.peek(transport, "work.dlq")] == [ids[2], ids[3]]
    assert len(deadletter.replay(transport, "work.dlq")) == 2
    assert transport.depth("work.dlq") == 0 and transport.depth("work") == 2
