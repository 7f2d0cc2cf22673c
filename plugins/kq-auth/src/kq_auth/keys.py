"""Reading the signer's options: the private key, its certificate and the trusted store.

Everything is read and checked once, when the app builds its codec (at ``App.check()`` on
start-up), so a wrong path, password or key/certificate pair fails there with the option's
name, not at the first message. What the per-message code needs is kept ready: the private
key's signing function, and each trusted certificate's verifying function by fingerprint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from kq.config import reject_unknown_options
from kq.exceptions import ConfigurationError

log = logging.getLogger("kq.auth")

OPTIONS = ("key", "key_password", "certificate", "cert_store", "digest")
DIGESTS: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
#: Files of a ``cert_store`` directory that are read; others (a README, keys) are left alone.
CERT_SUFFIXES = (".pem", ".crt", ".cer")
PREFIX = "message_signer_options"

Sign = Callable[[bytes], bytes]
#: Raises ``cryptography.exceptions.InvalidSignature`` for a signature that does not match.
Verify = Callable[[bytes, bytes], None]


@attrs.frozen
class Identity:
    """A certificate as the signer uses it: who, valid when, and how to check its signatures."""

    #: sha256 of the DER certificate, lower-case hex: what the ``x-kq-signer`` header carries.
    fingerprint: str
    subject: str
    not_before: datetime
    not_after: datetime
    public_key: Any = attrs.field(repr=False)
    verify: Verify = attrs.field(repr=False)
    source: str = ""

    def validity_problem(self, now: datetime) -> str | None:
        """Why the certificate is not valid at ``now``, or None when it is."""
        if now < self.not_before:
            return f"is not valid before {self.not_before.isoformat()}"
        if now > self.not_after:
            return f"expired on {self.not_after.isoformat()}"
        return None

    def describe(self) -> str:
        return f"certificate {self.subject!r} (sha256 {self.fingerprint}, from {self.source})"


@attrs.frozen
class Options:
    """``message_signer_options`` of the ``x509`` signer, read and checked."""

    #: Signs with the private key; None in a process that only verifies.
    sign: Sign | None
    #: The certificate of that key; None exactly when ``sign`` is.
    identity: Identity | None
    #: Trusted certificates by fingerprint; None in a process that only signs.
    trusted: Mapping[str, Identity] | None


def read_options(options: Mapping[str, Any]) -> Options:
    reject_unknown_options(PREFIX, options, OPTIONS)
    digest_name = options.get("digest", "sha256")
    if not isinstance(digest_name, str) or digest_name not in DIGESTS:
        raise ConfigurationError(
            f"{PREFIX}['digest'] must be one of {', '.join(DIGESTS)}, got "
            f"{digest_name!r} (and the same on clients and workers)"
        )
    digest = DIGESTS[digest_name]()
    key_path, cert_path, store_path = (options.get(name) for name in ("key", "certificate", "cert_store"))
    if (key_path is None) != (cert_path is None):
        raise ConfigurationError(
            f"{PREFIX}: 'key' and 'certificate' go together (the private "
            "key signs, its certificate tells workers who signed); set both "
            "to send messages, or neither in a process that only verifies"
        )
    if key_path is None and store_path is None:
        raise ConfigurationError(
            f"{PREFIX}: set 'key' and 'certificate' (to sign what this app "
            "sends) and/or 'cert_store' (to verify what its workers receive)"
        )
    sign = identity = trusted = None
    if key_path is not None:
        key = _private_key(key_path, options.get("key_password"))
        identity = _identities(_path("certificate", cert_path), digest)[0]
        if _public_bytes(key.public_key()) != _public_bytes(identity.public_key):
            raise ConfigurationError(
                f"{PREFIX}: 'key' ({key_path}) is not the private key of "
                f"'certificate' ({cert_path}); give the pair made together"
            )
        sign = _signer(key, digest)
    if store_path is not None:
        trusted = _store(_path("cert_store", store_path), digest)
    return Options(sign, identity, trusted)


def _path(option: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigurationError(f"{PREFIX}['{option}'] must be a file path, got {value!r}")
    return Path(value).expanduser()


def _read(option: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{PREFIX}['{option}']: cannot read {path}: {exc.strerror or exc}") from None


def _private_key(value: Any, password: Any) -> Any:
    path = _path("key", value)
    if password is not None and not isinstance(password, (str, bytes)):
        raise ConfigurationError(f"{PREFIX}['key_password'] must be a string, got {type(password).__name__}")
    secret = password.encode() if isinstance(password, str) else password
    try:
        return serialization.load_pem_private_key(_read("key", path), secret)
    except TypeError as exc:  # cryptography's way of saying "encrypted" or "not encrypted"
        hint = (
            "it is encrypted: set 'key_password'"
            if password is None
            else "it is not encrypted: drop 'key_password'"
        )
        raise ConfigurationError(f"{PREFIX}['key']: {path}: {hint} ({exc})") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(
            f"{PREFIX}['key']: {path} is not a PEM private key kq-auth can "
            f"use, or 'key_password' is wrong ({exc})"
        ) from None


def _identities(path: Path, digest: hashes.HashAlgorithm, option: str = "certificate") -> list[Identity]:
    """Every certificate in a PEM file."""
    try:
        certs = x509.load_pem_x509_certificates(_read(option, path))
    except ValueError as exc:
        raise ConfigurationError(f"{PREFIX}['{option}']: {path} holds no PEM certificate ({exc})") from None
    identities = []
    for cert in certs:
        public_key = cert.public_key()
        try:
            verify = _verifier(public_key, digest)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{PREFIX}['{option}']: {path}: {exc}") from None
        identities.append(
            Identity(
                fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
                subject=cert.subject.rfc4514_string(),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                public_key=public_key,
                verify=verify,
                source=str(path),
            )
        )
    return identities


def _store(path: Path, digest: hashes.HashAlgorithm) -> dict[str, Identity]:
    """The trusted certificates of ``cert_store``: a directory of PEM files or one PEM file."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in CERT_SUFFIXES and p.is_file())
        if not files:
            raise ConfigurationError(
                f"{PREFIX}['cert_store']: {path} has no certificate files ({', '.join(CERT_SUFFIXES)})"
            )
    else:
        files = [path]
    trusted = {}
    now = datetime.now(timezone.utc)
    for file in files:
        for identity in _identities(file, digest, "cert_store"):
            problem = identity.validity_problem(now)
            if problem:
                log.warning(
                    "kq-auth: trusted %s %s; messages it signs are rejected", identity.describe(), problem
                )
            trusted[identity.fingerprint] = identity
    return trusted


def _public_bytes(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


# --- one signature scheme per key type: RSA-PSS, ECDSA, EdDSA --------------------------------


def _pss(digest: hashes.HashAlgorithm) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.DIGEST_LENGTH)


def _signer(key: Any, digest: hashes.HashAlgorithm) -> Sign:
    if isinstance(key, rsa.RSAPrivateKey):
        pss = _pss(digest)
        return lambda data: key.sign(data, pss, digest)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(digest)
        return lambda data: key.sign(data, ecdsa)
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return key.sign
    raise ConfigurationError(
        f"{PREFIX}['key']: a {type(key).__name__} cannot sign here; use an RSA, EC or Ed25519 key"
    )


def _verifier(public_key: Any, digest: hashes.HashAlgorithm) -> Verify:
    if isinstance(public_key, rsa.RSAPublicKey):
        pss = _pss(digest)
        return lambda signature, data: public_key.verify(signature, data, pss, digest)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        ecdsa = ec.ECDSA(digest)
        return lambda signature, data: public_key.verify(signature, data, ecdsa)
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return public_key.verify
    raise ConfigurationError(
        f"its {type(public_key).__name__} cannot be used; use RSA, EC or Ed25519 certificates"
    )
