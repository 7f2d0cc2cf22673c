"""What the x509 signer does beyond the contract: its options and their errors, certificate
validity, the wire format, keys made with the openssl commands in docs/security.md, and the
app-level errors of a process that lacks the key or the store it needs."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from kq import App
from kq.exceptions import ConfigurationError, MessageRejected
from kq.testing.contracts.signer import task_envelope
from kq.transport import Envelope
from kq_auth.signer import SIGNATURE_HEADER, SIGNER_HEADER, canonical, make_signer, signed_headers

MakeIdentity = Callable[..., Any]
MakeStore = Callable[..., Path]


def rejection(verifier: Any, envelope: Envelope) -> str:
    with pytest.raises(MessageRejected) as caught:
        verifier.verify(envelope)
    assert caught.value.reason == "untrusted"
    return caught.value.detail


# --- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"cert_store": "/x", "keyfile": "/y"}, "unknown message_signer_options keyfile"),
        ({}, "set 'key' and 'certificate'"),
        ({"key": "/k"}, "'key' and 'certificate' go together"),
        ({"certificate": "/c", "cert_store": "/s"}, "'key' and 'certificate' go together"),
        ({"cert_store": "/x", "digest": "md5"}, "['digest'] must be one of sha256, sha384, sha512"),
        ({"cert_store": "/no/such/store"}, "['cert_store']: cannot read /no/such/store"),
        ({"cert_store": 42}, "['cert_store'] must be a file path, got 42"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_signer(options)
    assert says in str(caught.value)


def test_key_problems_are_explained(make_identity: MakeIdentity, tmp_path: Path) -> None:
    locked = make_identity("locked", password=b"s3cret")
    plain = make_identity("plain")
    cases = [
        (locked.signing(), "it is encrypted: set 'key_password'"),
        (locked.signing(key_password="wrong"), "or 'key_password' is wrong"),
        (plain.signing(key_password="s3cret"), "it is not encrypted: drop 'key_password'"),
        (
            {**plain.signing(), "certificate": str(locked.certificate)},
            f"'key' ({plain.key}) is not the private key of 'certificate'",
        ),
        ({**plain.signing(), "certificate": str(plain.key)}, "holds no PEM certificate"),
    ]
    for options, says in cases:
        with pytest.raises(ConfigurationError) as caught:
            make_signer(options)
        assert says in str(caught.value), caught.value
    assert make_signer(locked.signing(key_password="s3cret")).identity is not None


def test_a_store_without_certificates_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match=r"has no certificate files \(.pem, .crt, .cer\)"):
        make_signer({"cert_store": str(tmp_path)})


def test_a_store_may_be_one_file_of_several_certificates(make_identity: MakeIdentity, tmp_path: Path) -> None:
    one, two = make_identity("one"), make_identity("two", "ed25519")
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(one.certificate.read_bytes() + two.certificate.read_bytes())
    verifier = make_signer({"cert_store": str(bundle)})
    for identity in (one, two):
        assert verifier.verify(make_signer(identity.signing()).sign(task_envelope())) == task_envelope()


# --- who signs, who verifies ---------------------------------------------------------------


def test_a_verifying_only_signer_cannot_sign(make_identity: MakeIdentity, make_store: MakeStore) -> None:
    verifier = make_signer({"cert_store": str(make_store(make_identity("client")))})
    with pytest.raises(ConfigurationError, match=r"has no 'key': this process verifies"):
        verifier.sign(task_envelope())


def test_a_signing_only_signer_cannot_verify(make_identity: MakeIdentity) -> None:
    signer = make_signer(make_identity("client").signing())
    with pytest.raises(ConfigurationError, match=r"has no 'cert_store'"):
        signer.verify(signer.sign(task_envelope()))


def test_the_headers_name_the_certificate_and_carry_the_signature(
    make_identity: MakeIdentity,
) -> None:
    identity = make_identity("client", "ed25519")
    sealed = make_signer(identity.signing()).sign(task_envelope())
    cert = x509.load_pem_x509_certificate(identity.certificate.read_bytes())
    assert sealed.headers[SIGNER_HEADER] == cert.fingerprint(hashes.SHA256()).hex()
    cert.public_key().verify(
        base64.b64decode(sealed.headers[SIGNATURE_HEADER]), canonical(sealed, signed_headers(sealed.headers))
    )
    assert sealed.body == task_envelope().body


def test_signing_with_a_certificate_outside_its_validity_is_an_error(
    make_identity: MakeIdentity,
) -> None:
    for name, starts in (("expired", timedelta(days=-10)), ("future", timedelta(days=1))):
        signer = make_signer(make_identity(name, valid_from=starts, valid_for=timedelta(days=5)).signing())
        with pytest.raises(ConfigurationError, match="expired on|is not valid before"):
            signer.sign(task_envelope())


@pytest.mark.parametrize(
    ("starts", "says"),
    [(timedelta(days=-10), "expired on"), (timedelta(days=1), "is not valid before")],
    ids=["expired", "not-yet-valid"],
)
def test_a_trusted_certificate_outside_its_validity_is_refused(
    make_identity: MakeIdentity,
    make_store: MakeStore,
    starts: timedelta,
    says: str,
) -> None:
    good = make_identity("good")
    sealed = make_signer(good.signing()).sign(task_envelope())
    # The worker trusts another certificate of the same key, whose dates exclude now.
    dated = make_identity("dated", key=good.private_key, valid_from=starts, valid_for=timedelta(days=5))
    verifier = make_signer({"cert_store": str(make_store(dated))})
    assert "not in cert_store" in rejection(verifier, sealed)
    claimed = with_header(sealed, SIGNER_HEADER, fingerprint(dated.certificate))
    detail = rejection(verifier, claimed)
    assert says in detail and "signed by trusted certificate 'CN=dated'" in detail
    # With the dates fixed the same signature is good: only the validity was refused.
    renewed = make_identity("renewed", key=good.private_key)
    verifier = make_signer({"cert_store": str(make_store(renewed))})
    assert verifier.verify(with_header(sealed, SIGNER_HEADER, fingerprint(renewed.certificate)))


def fingerprint(path: Path) -> str:
    return x509.load_pem_x509_certificate(path.read_bytes()).fingerprint(hashes.SHA256()).hex()


def with_header(envelope: Envelope, key: str, value: Any) -> Envelope:
    return attrs.evolve(envelope, headers={**envelope.headers, key: value})


def test_the_digest_must_match(make_identity: MakeIdentity, make_store: MakeStore) -> None:
    client = make_identity("client", "rsa")
    store = str(make_store(client))
    sealed = make_signer(client.signing(digest="sha512")).sign(task_envelope())
    assert make_signer({"cert_store": store, "digest": "sha512"}).verify(sealed) == task_envelope()
    assert "bad signature" in rejection(make_signer({"cert_store": store}), sealed)


def test_a_malformed_signature_header_is_untrusted(
    make_identity: MakeIdentity, make_store: MakeStore
) -> None:
    client = make_identity("client")
    sealed = make_signer(client.signing()).sign(task_envelope())
    verifier = make_signer({"cert_store": str(make_store(client))})
    for bad in ("not base64!", 12, None, ["a"]):
        rejection(verifier, with_header(sealed, SIGNATURE_HEADER, bad))
    for bad in (12, ["a"], "0" * 64):
        assert "not in cert_store" in rejection(verifier, with_header(sealed, SIGNER_HEADER, bad))


# --- keys made as docs/security.md says ------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize(
    "newkey",
    [
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ["-newkey", "ed25519"],
        ["-newkey", "rsa:3072"],
    ],
    ids=["ec", "ed25519", "rsa"],
)
def test_keys_made_with_the_documented_openssl_command_work(tmp_path: Path, newkey: list[str]) -> None:
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            *newkey,
            "-days",
            "365",
            "-subj",
            "/CN=kq-client-2026",
            "-keyout",
            "client.key",
            "-out",
            "client.pem",
            "-passout",
            "pass:s3cret",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    signer = make_signer(
        {
            "key": str(tmp_path / "client.key"),
            "key_password": "s3cret",
            "certificate": str(tmp_path / "client.pem"),
        }
    )
    verifier = make_signer({"cert_store": str(tmp_path / "client.pem")})
    assert verifier.verify(signer.sign(task_envelope())) == task_envelope()


# --- the app ---------------------------------------------------------------------------------


def test_an_app_without_a_key_says_so_at_the_first_send(
    tmp_path: Path, make_identity: MakeIdentity, make_store: MakeStore
) -> None:
    store = str(make_store(make_identity("client")))
    app = App(
        "verifier",
        broker=f"sqlite:///{tmp_path / 'kq.sqlite3'}",
        message_signer="x509",
        message_signer_options={"cert_store": store},
    )
    try:
        app.check()  # a worker with a store and no key starts
        with pytest.raises(ConfigurationError, match="has no 'key'"):
            app.send_task("proj.add", (2, 3))
    finally:
        app.close()


def test_app_check_fails_on_bad_signer_options(tmp_path: Path) -> None:
    app = App(
        "bad",
        broker=f"sqlite:///{tmp_path / 'kq.sqlite3'}",
        message_signer="x509",
        message_signer_options={"cert_store": str(tmp_path / "missing")},
    )
    try:
        with pytest.raises(ConfigurationError, match=r"\['cert_store'\]: cannot read"):
            app.check()
    finally:
        app.close()
