"""kq-sqs: Amazon SQS as kq's broker (``sqs://``), through kombu's SQS transport.

Every kq process imports this module, so it holds only the hook implementation and what it
declares; the transport (:mod:`kq_sqs.transport`), with kombu's SQS module and boto3, is
imported when the first one is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.specs import lazy
from kq.transport import TransportCapabilities, TransportSpec

__version__ = "0.1.0"

#: What SQS itself does: a received message stays invisible for the queue's visibility timeout
#: (its receipt handle acks it from any client), DelaySeconds holds a message up to 15 minutes
#: (a later eta arrives early and the worker holds it), and kq's dead letters are copies sent
#: to ``<queue>.dlq``. No priorities, and no fan-out (kombu's would need SNS): remote control
#: and broadcast revokes need another broker.
TRANSPORT_CAPABILITIES = TransportCapabilities(native_delay=True, visibility_timeout=True, dead_letter=True)


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("sqs",),
            factory=lazy("kq_sqs.transport:SQSTransport"),
            capabilities=TRANSPORT_CAPABILITIES,
            description="Amazon SQS via kombu and boto3: long polling, FIFO queues, delays up to "
            "15 min, dead letters",
        )
    ]
