"""kq-amqp: RabbitMQ as kq's broker (``amqp://``, ``amqps://``, ``pyamqp://``) and the ``rpc://``
result backend that sends each result back to the client that sent the task.

Every kq process imports this module, so it holds only the hook implementations and what they
declare; the broker (:mod:`kq_amqp.transport`) and the backend (:mod:`kq_amqp.backend`), with
kombu and py-amqp, are imported when the first one is made.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendCapabilities, BackendSpec
from kq.specs import lazy
from kq.transport import TransportCapabilities, TransportSpec

__version__ = "0.1.0"

TRANSPORT_CAPABILITIES = TransportCapabilities(
    priorities=True, native_delay=True, fanout=True, dead_letter=True
)
RPC_SCHEMES = ("rpc", "rpc+amqp", "rpc+amqps", "rpc+pyamqp")
#: Each client reads its results from a reply queue of its own, so they are not shared.
RPC_CAPABILITIES = BackendCapabilities(push=True, shared=False, reply_to=True)


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("amqp", "amqps", "pyamqp"),
            factory=lazy("kq_amqp.transport:AMQPTransport"),
            capabilities=TRANSPORT_CAPABILITIES,
            description="RabbitMQ via py-amqp: confirmed publishes, priorities, dead letters, "
            "delay queues, fan-out",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=RPC_SCHEMES,
            factory=lazy("kq_amqp.backend:RpcBackend"),
            capabilities=RPC_CAPABILITIES,
            description="results sent back to the calling client over RabbitMQ (per client)",
        )
    ]
