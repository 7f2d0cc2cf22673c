"""kq-gcpubsub: Google Cloud Pub/Sub as kq's broker (``gcpubsub://projects/<project>``).

Every kq process imports this module, so it holds only the hook implementation and what it
declares; the transport (:mod:`kq_gcpubsub.transport`), kombu's Pub/Sub transport and the
Google clients (gRPC among them) are imported when the first transport is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.specs import lazy
from kq.transport import TransportCapabilities, TransportSpec

__version__ = "0.1.0"

#: Pub/Sub has no priorities and no delayed delivery; kombu keeps extending the ack deadline of
#: every message a consumer holds (so a slow task is not redelivered), which is why there is no
#: visibility timeout either: a message comes back when its consumer gives it back or goes away.
# Pub/Sub has no API for the number of messages waiting (see docs/brokers/gcpubsub.md).
TRANSPORT_CAPABILITIES = TransportCapabilities(exact_depth=False)


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("gcpubsub",),
            factory=lazy("kq_gcpubsub.transport:PubSubTransport"),
            capabilities=TRANSPORT_CAPABILITIES,
            description="Google Cloud Pub/Sub through kombu: a topic and a subscription per queue",
        )
    ]
