"""kq's transport contract against Google's Pub/Sub emulator. Pub/Sub cannot count the messages
waiting, so the transport declares ``exact_depth=False`` and the contract checks purge by fetching."""

from __future__ import annotations

from typing import Any

import pytest

from kq.testing.contracts import TransportContract


class TestPubSubTransport(TransportContract):
    @pytest.fixture
    def transport_url(self, pubsub_url: str) -> str:
        return pubsub_url

    @pytest.fixture
    def transport_options(self, pubsub_options: dict[str, Any]) -> dict[str, Any]:
        return pubsub_options
