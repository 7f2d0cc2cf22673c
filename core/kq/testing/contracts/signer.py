"""The message signer contract: what signs must verify, and nothing else may.

A signer's worth is in what it refuses, so most tests here forge: a flipped body byte, a changed
or added header, no signature, a stranger's signature, one message's signature on another.
Every refusal must be ``MessageRejected`` with the reason ``untrusted`` (the worker dead-letters
it under that reason), and verifying must never hand a byte to a serializer.

Subclass and provide three signers::

    class TestX509(SignerContract):
        @pytest.fixture
        def signer(self):       # signs (and may verify)
            ...
        @pytest.fixture
        def verifier(self):     # verifies, trusting ``signer``
            ...
        @pytest.fixture
        def stranger(self):     # signs with a key ``verifier`` does not trust
            ...
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import attrs
import pytest

from kq.codec import Codec, Signer, builtin_compressions
from kq.exceptions import MessageRejected
from kq.serialization import Serializers
from kq.transport import Envelope, dead_letter_headers

#: Calls made to :func:`_tripwire`; a body that unpickles calls it.
TRIPPED: list[str] = []


def _tripwire() -> str:
    TRIPPED.append("unpickled")
    return "tripped"


class _Tripwire:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _tripwire, ()


def task_envelope(task_id: str = "6f1c5a2e-0000-4000-8000-000000000001", **changes: Any) -> Envelope:
    """A task message as a kq client publishes it, with every kind of header value."""
    headers = {
        "lang": "py",
        "task": "proj.add",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "shadow": None,
        "eta": "2030-01-01T00:00:00+00:00",
        "expires": None,
        "timelimit": (30.5, None),
        "argsrepr": "(2, 3)",
        "kwargsrepr": "{}",
        "origin": "gen1@host",
        "ignore_result": False,
        "custom": {"nested": [1, "two", None, True]},
    }
    envelope = Envelope(
        body=b'[[2, 3], {}, {"callbacks": null}]',
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        correlation_id=task_id,
        reply_to="kq.reply.abc",
    )
    return attrs.evolve(envelope, **changes)


class SignerContract:
    """Tests every message signer must pass. Subclasses provide ``signer``, ``verifier`` (which
    trusts ``signer``) and ``stranger`` (whose key ``verifier`` does not trust)."""

    @pytest.fixture
    def signer(self) -> Signer:
        raise NotImplementedError("a SignerContract subclass must provide signer")

    @pytest.fixture
    def verifier(self) -> Signer:
        raise NotImplementedError("a SignerContract subclass must provide verifier")

    @pytest.fixture
    def stranger(self) -> Signer:
        raise NotImplementedError("a SignerContract subclass must provide stranger")

    @pytest.fixture
    def sealed(self, signer: Signer) -> Envelope:
        return signer.sign(task_envelope())

    @staticmethod
    def refused(verifier: Signer, envelope: Envelope) -> MessageRejected:
        with pytest.raises(MessageRejected) as caught:
            verifier.verify(envelope)
        assert caught.value.reason == "untrusted", caught.value
        return caught.value

    # --- what is signed comes back as it was ------------------------------------------------

    @pytest.mark.parametrize(
        "body", [b"", b"\x00\xff" * 300, bytes(range(256))], ids=["empty", "binary", "every-byte"]
    )
    def test_round_trip_gives_back_the_original(self, signer: Signer, verifier: Signer, body: bytes) -> None:
        original = task_envelope(body=body, content_type="application/x-msgpack", content_encoding="binary")
        headers_before = dict(original.headers)
        assert verifier.verify(signer.sign(original)) == original
        assert original.headers == headers_before  # sign() did not change its argument

    def test_headers_survive_a_json_round_trip(self, sealed: Envelope, verifier: Signer) -> None:
        # Redis and SQLite keep headers as JSON: tuples come back as lists.
        headers = json.loads(json.dumps(sealed.headers))
        assert verifier.verify(attrs.evolve(sealed, headers=headers)).body == sealed.body

    def test_dead_letter_and_broker_headers_do_not_break_it(self, sealed: Envelope, verifier: Signer) -> None:
        # kq's dead-lettering and RabbitMQ's (delay queues too) add headers after signing.
        headers = dead_letter_headers(sealed.headers, "celery", "untrusted: test")
        headers["x-death"] = [{"count": 1, "reason": "expired", "queue": "celery.delay.1000"}]
        headers["x-first-death-reason"] = headers["x-last-death-reason"] = "expired"
        assert verifier.verify(attrs.evolve(sealed, headers=headers)) == task_envelope()

    def test_compressed_messages_are_verified_before_inflating(
        self, signer: Signer, verifier: Signer
    ) -> None:
        compressions = builtin_compressions()
        sealed = Codec(compressions, signer).seal(task_envelope(), "zlib")
        assert Codec(compressions, verifier).open(sealed) == task_envelope()
        flipped = attrs.evolve(sealed, body=sealed.body[:-1] + bytes([sealed.body[-1] ^ 1]))
        with pytest.raises(MessageRejected) as caught:
            Codec(compressions, verifier).open(flipped)
        assert caught.value.reason == "untrusted"  # not "decode": refused before inflating

    # --- everything else is refused as untrusted --------------------------------------------

    def test_any_flipped_body_byte_is_refused(self, sealed: Envelope, verifier: Signer) -> None:
        body = sealed.body
        for index in range(len(body)):
            for bit in (0x01, 0x80):
                flipped = body[:index] + bytes([body[index] ^ bit]) + body[index + 1 :]
                self.refused(verifier, attrs.evolve(sealed, body=flipped))

    @pytest.mark.parametrize(
        "body",
        [b"", b"[[2, 3], {}, {}]", b'[[2, 3], {}, {"callbacks": null}] '],
        ids=["emptied", "shortened", "extended"],
    )
    def test_a_changed_length_body_is_refused(self, sealed: Envelope, verifier: Signer, body: bytes) -> None:
        self.refused(verifier, attrs.evolve(sealed, body=body))

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("task", "proj.delete_everything"),
            ("eta", "2030-01-01T00:00:01+00:00"),
            ("argsrepr", "(2, 4)"),
            ("id", "6f1c5a2e-0000-4000-8000-000000000002"),
            ("retries", 1),
            ("retries", "0"),
            ("ignore_result", 0),
            ("eta", None),
            ("timelimit", [30.5, 1]),
            ("custom", {"nested": [1, "two", None, False]}),
        ],
    )
    def test_a_changed_header_is_refused(
        self, sealed: Envelope, verifier: Signer, key: str, value: Any
    ) -> None:
        self.refused(verifier, attrs.evolve(sealed, headers={**sealed.headers, key: value}))

    @pytest.mark.parametrize(
        "change",
        [
            {"content_type": "application/x-python-serialize"},
            {"content_encoding": "binary"},
            {"reply_to": "attacker.replies"},
            {"correlation_id": "other"},
        ],
        ids=lambda change: next(iter(change)),
    )
    def test_changed_properties_are_refused(
        self, sealed: Envelope, verifier: Signer, change: dict[str, Any]
    ) -> None:
        self.refused(verifier, attrs.evolve(sealed, **change))

    def test_an_added_or_removed_header_is_refused(self, sealed: Envelope, verifier: Signer) -> None:
        self.refused(verifier, attrs.evolve(sealed, headers={**sealed.headers, "stamped": "x"}))
        fewer = {key: value for key, value in sealed.headers.items() if key != "expires"}
        self.refused(verifier, attrs.evolve(sealed, headers=fewer))

    def test_an_unsigned_message_is_refused(self, verifier: Signer) -> None:
        self.refused(verifier, task_envelope())
        self.refused(verifier, task_envelope(headers={}))

    def test_a_strangers_signature_is_refused(self, stranger: Signer, verifier: Signer) -> None:
        self.refused(verifier, stranger.sign(task_envelope()))

    def test_a_signature_is_not_valid_on_another_message(self, signer: Signer, verifier: Signer) -> None:
        one = signer.sign(task_envelope())
        other_id = "6f1c5a2e-0000-4000-8000-000000000009"
        other = signer.sign(task_envelope(other_id, body=b'[["rm -rf /"], {}, {}]'))
        self.refused(verifier, attrs.evolve(other, body=one.body))
        self.refused(verifier, attrs.evolve(one, body=other.body))
        added = {
            key: value for key, value in one.headers.items() if task_envelope().headers.get(key) != value
        }
        if added:  # the signature travels in headers: move it onto the other message
            self.refused(verifier, attrs.evolve(other, headers={**other.headers, **added}))

    def test_verifying_never_deserializes(
        self, signer: Signer, verifier: Signer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def loads(*args: Any) -> Any:
            raise AssertionError("verify() called a serializer")

        monkeypatch.setattr(Serializers, "loads", loads)
        TRIPPED.clear()
        body = pickle.dumps([[_Tripwire()], {}, {}])
        pickled = task_envelope(
            body=body, content_type="application/x-python-serialize", content_encoding="binary"
        )
        assert verifier.verify(signer.sign(pickled)).body == body
        self.refused(verifier, attrs.evolve(signer.sign(pickled), body=body + b"."))
        self.refused(verifier, pickled)
        assert TRIPPED == []
