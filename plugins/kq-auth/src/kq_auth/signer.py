"""The ``x509`` signer: what is signed, and how a worker decides to trust a message.

A signed message carries two headers: ``x-kq-signer``, the sha256 fingerprint of the signing
certificate (which trusted key to check with), and ``x-kq-signature``, base64 of the signature
over :func:`canonical` bytes: the body (as it travels, so compressed if it is), the content type
and encoding, ``correlation_id``, ``reply_to`` and every header except the signature's own and
those brokers and dead-lettering add on the way (:data:`UNSIGNED_PREFIXES`). Headers are signed
as canonical JSON, so they compare equal after any broker's round trip: Redis stores them as
JSON, and AMQP tables give back lists for tuples and the same ``None``, bools, ints, floats and
strings. Priority is not signed: brokers normalize it (Redis gives back 0 for none).

Verifying parses nothing but these two headers. The envelope it returns holds exactly what was
signed, so nothing unsigned reaches the worker.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature

from kq.exceptions import ConfigurationError, EncodeError, MessageRejected
from kq.specs import Signer
from kq.transport import DEAD_LETTER_HEADERS, Envelope

from .keys import PREFIX, Options, read_options

SIGNATURE_HEADER = "x-kq-signature"
SIGNER_HEADER = "x-kq-signer"
#: Headers left out of the signature: its own, RabbitMQ's dead-lettering (``x-death``,
#: ``x-first-death-*``, ``x-last-death-*``, which delay queues add too) and redelivery count
#: (quorum queues), and kq's dead-letter headers, which ``kq dlq replay`` removes again.
UNSIGNED_PREFIXES = (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    "x-death",
    "x-first-death",
    "x-last-death",
    "x-delivery-count",
    *DEAD_LETTER_HEADERS,
)
#: Starts the signed bytes, so a kq-auth signature means nothing anywhere else and a future
#: format cannot be confused with this one.
DOMAIN = b"kq-auth/x509/1\n"


def signed_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in headers.items()
        if not (isinstance(key, str) and key.startswith(UNSIGNED_PREFIXES))
    }


def canonical(envelope: Envelope, headers: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers. The metadata's length comes first, so no byte can move
    between metadata and body. Raises TypeError or ValueError for headers JSON cannot hold."""
    meta = json.dumps(
        [
            envelope.content_type,
            envelope.content_encoding,
            envelope.correlation_id,
            envelope.reply_to,
            headers,
        ],
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    return b"".join((DOMAIN, len(meta).to_bytes(8, "big"), meta, envelope.body))


def untrusted(why: str) -> MessageRejected:
    return MessageRejected("untrusted", why)


class X509Signer(Signer):
    """Signs with a private key and its certificate; verifies against trusted certificates."""

    def __init__(self, options: Options) -> None:
        self._sign = options.sign
        self.identity = options.identity
        self._trusted = options.trusted

    def sign(self, envelope: Envelope) -> Envelope:
        if self._sign is None or self.identity is None:
            raise ConfigurationError(
                f"{PREFIX} has no 'key': this process verifies messages but cannot send any. "
                "Set 'key' (a PEM private key) and 'certificate' (its certificate, trusted by "
                "the workers) where tasks are sent, workers that retry or start workflows included"
            )
        problem = self.identity.validity_problem(datetime.now(timezone.utc))
        if problem:
            raise ConfigurationError(
                f"{PREFIX}['certificate']: {self.identity.describe()} "
                f"{problem}, so workers would reject every message; make a "
                "new key (docs/security.md, key rotation)"
            )
        headers = signed_headers(envelope.headers)
        try:
            data = canonical(envelope, headers)
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"message headers cannot be signed (they must be JSON values): {exc}") from None
        signature = base64.b64encode(self._sign(data)).decode("ascii")
        return attrs.evolve(
            envelope,
            headers={**headers, SIGNATURE_HEADER: signature, SIGNER_HEADER: self.identity.fingerprint},
        )

    def verify(self, envelope: Envelope) -> Envelope:
        if self._trusted is None:
            raise ConfigurationError(
                f"{PREFIX} has no 'cert_store': this process signs messages but cannot verify "
                "any. Set 'cert_store' (the trusted certificates) wherever a worker runs"
            )
        headers = envelope.headers
        if not isinstance(headers, Mapping):
            raise untrusted("unsigned message (it has no headers)")
        signature, fingerprint = headers.get(SIGNATURE_HEADER), headers.get(SIGNER_HEADER)
        if signature is None or fingerprint is None:
            raise untrusted(
                f"unsigned message (no {SIGNATURE_HEADER} and {SIGNER_HEADER} "
                "headers): only signed messages are accepted"
            )
        identity = self._trusted.get(fingerprint) if isinstance(fingerprint, str) else None
        if identity is None:
            raise untrusted(f"signed by certificate {str(fingerprint)[:64]!r}, which is not in cert_store")
        problem = identity.validity_problem(datetime.now(timezone.utc))
        if problem:
            raise untrusted(f"signed by trusted {identity.describe()}, which {problem}")
        try:
            raw = base64.b64decode(signature, validate=True)
            content = signed_headers(headers)
            identity.verify(raw, canonical(envelope, content))
        except (TypeError, ValueError, InvalidSignature):  # bad base64 or JSON too
            raise untrusted(
                f"bad signature for {identity.describe()}: the message was changed "
                "after it was signed, or not signed with that certificate's key"
            ) from None
        return attrs.evolve(envelope, headers=content)


def make_signer(options: Mapping[str, Any]) -> X509Signer:
    """The ``x509`` spec's factory: reads and checks ``message_signer_options``."""
    return X509Signer(read_options(options))
