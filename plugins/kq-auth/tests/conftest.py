"""Keys and certificates made at test time (no private key is ever committed), and the real
brokers the end-to-end tests run on."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from kq.testing.servers import delete_amqp_queues, delete_redis_keys, hold, require

EDDSA = (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


@attrs.frozen
class Identity:
    """A private key and its self-signed certificate, as PEM files."""

    key: Path
    certificate: Path
    private_key: Any = attrs.field(repr=False)

    def signing(self, **options: Any) -> dict[str, Any]:
        """``message_signer_options`` of a client that signs with this identity."""
        return {"key": str(self.key), "certificate": str(self.certificate), **options}


def new_key(key_type: str) -> Any:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ed448":
        return ed448.Ed448PrivateKey.generate()
    return ed25519.Ed25519PrivateKey.generate()


def write_identity(
    directory: Path,
    name: str,
    key_type: str = "ec",
    *,
    valid_from: timedelta = timedelta(days=-1),
    valid_for: timedelta = timedelta(days=30),
    password: bytes | None = None,
    key: Any = None,
) -> Identity:
    """A new key (or ``key``) and a CA-less certificate for it, valid from ``now + valid_from``
    for ``valid_for``, written to ``directory/name.key`` and ``directory/name.pem``."""
    key = key or new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.now(timezone.utc) + valid_from
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .sign(key, None if isinstance(key, EDDSA) else hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    identity = Identity(directory / f"{name}.key", directory / f"{name}.pem", key)
    identity.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    identity.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return identity


@pytest.fixture
def make_identity(tmp_path: Path) -> Callable[..., Identity]:
    """``make_identity(name, key_type="ec", **validity)``: see :func:`write_identity`."""
    keys = tmp_path / "keys"
    keys.mkdir()
    return lambda name, key_type="ec", **kwargs: write_identity(keys, name, key_type, **kwargs)


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """``make_store(*identities)``: a cert_store directory trusting exactly their certificates."""
    made = 0

    def make(*identities: Identity) -> Path:
        nonlocal made
        made += 1
        store = tmp_path / f"store{made}"
        store.mkdir()
        for identity in identities:
            shutil.copy(identity.certificate, store / identity.certificate.name)
        return store

    return make


@pytest.fixture
def redis_broker() -> Iterator[dict[str, Any]]:
    """Settings for the real Redis (database 15) under a key prefix of the test's own, whose
    keys are deleted afterwards."""
    prefix = f"kqtest-auth-{uuid.uuid4().hex[:12]}:"
    with hold("redis") as (host, port):  # waits while a restart test elsewhere holds it
        yield {
            "broker_url": f"redis://{host}:{port}/15",
            "broker_transport_options": {"global_keyprefix": prefix},
        }
        delete_redis_keys(prefix, host=host, port=port)


@pytest.fixture
def amqp_broker() -> Iterator[dict[str, Any]]:
    """Settings for the real RabbitMQ; the test's queue and its dead-letter queue are deleted
    afterwards."""
    host, port = require("rabbitmq")
    queue = f"kq-auth-{uuid.uuid4().hex[:10]}"
    yield {"broker_url": f"amqp://guest:guest@{host}:{port}//", "task_default_queue": queue}
    delete_amqp_queues(queue, host=host, port=port)
