"""The kernel's signer contract, for each kind of key the x509 signer takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kq.codec import Signer
from kq.testing.contracts import SignerContract
from kq_auth.signer import make_signer


class TestX509(SignerContract):
    @pytest.fixture(params=["rsa", "ec", "ed25519", "ed448"])
    def ours(self, request: pytest.FixtureRequest, make_identity: Callable[..., Any]) -> Any:
        return make_identity("client", request.param)

    @pytest.fixture
    def signer(self, ours: Any) -> Signer:
        return make_signer(ours.signing())

    @pytest.fixture
    def verifier(
        self, ours: Any, make_identity: Callable[..., Any], make_store: Callable[..., Path]
    ) -> Signer:
        return make_signer({"cert_store": str(make_store(ours, make_identity("other")))})

    @pytest.fixture
    def stranger(self, make_identity: Callable[..., Any], make_store: Callable[..., Path]) -> Signer:
        theirs = make_identity("stranger")
        return make_signer(theirs.signing(cert_store=str(make_store(theirs))))
