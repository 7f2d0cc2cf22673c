"""kq-auth: the ``x509`` message signer.

Clients sign every message with a private key; workers verify each one against a store of
trusted certificates before a byte of it is inflated or deserialized, and reject (dead-letter)
unsigned, tampered and untrusted messages. cryptography is imported when the signer is made, so
processes that sign nothing do not pay for it.
"""

from __future__ import annotations

from kq import hookimpl
from kq.specs import SignerSpec, lazy

__version__ = "0.1.0"
__all__ = ["kq_message_signers"]


@hookimpl
def kq_message_signers() -> list[SignerSpec]:
    return [
        SignerSpec(
            name="x509",
            factory=lazy("kq_auth.signer:make_signer"),
            description="X.509 keys and certificates (RSA-PSS, ECDSA, Ed25519); workers trust "
            "the certificates in cert_store",
        )
    ]
