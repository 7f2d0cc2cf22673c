"""kq-amqp: RabbitMQ as kq's broker (``amqp://``, ``amqps://``, ``pyamqp://``) and the ``rpc://``
result backend that sends each result back to the client that sent the task.

Only the hook implementations live here; the broker is in :mod:`kq_amqp.transport` and the
backend in :mod:`kq_amqp.backend`.
"""

from __future__ import annotations

from kq import hookimpl
from kq.backend import BackendSpec
from kq.transport import TransportSpec

from .backend import SCHEMES as RPC_SCHEMES
from .backend import RpcBackend
from .transport import AMQPTransport

__version__ = "0.1.0"


@hookimpl
def kq_transports() -> list[TransportSpec]:
    return [
        TransportSpec(
            schemes=("amqp", "amqps", "pyamqp"),
            factory=AMQPTransport,
            description="RabbitMQ via py-amqp: confirmed publishes, priorities, dead letters, "
                        "delay queues, fan-out",
        )
    ]


@hookimpl
def kq_result_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            schemes=RPC_SCHEMES,
            factory=RpcBackend,
            description="results sent back to the calling client over RabbitMQ (per client)",
        )
    ]
