"""moto's standalone server, the AWS stand-in of the tests of kq-sqs, kq-s3 and kq-dynamodb.

No cloud is reachable from the test machines, so those plugins run their contract suites
against moto (``pip install "moto[server]"``, in kq's ``test`` extra), which speaks the AWS
wire protocols of SQS, S3 and DynamoDB on one loopback port. Use it from a session fixture::

    @pytest.fixture(scope="session")
    def aws_endpoint():
        with moto_server() as endpoint:
            yield endpoint

The server accepts any credentials; :data:`CREDENTIALS` are the fake ones the tests use, and
:func:`moto_server` puts them (and :data:`REGION`) in ``os.environ`` for the block, so boto3's
usual credential chain finds them in the test process and in every process it starts.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .servers import free_port, spawn, under_ci

REGION = "us-east-1"
#: Fake credentials: moto checks none, but boto3 refuses to sign a request without any.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ENV = {
    "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
    "AWS_DEFAULT_REGION": REGION,
}


#: moto's server handling one request at a time (see :func:`moto_server`).
_SERIAL = """
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs.models import Queue
moto, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()
def serial(environ, start_response):
    with lock:
        return [b"".join(moto(environ, start_response))]
wait_for_messages = Queue.wait_for_messages
def waiting_unlocked(queue, timeout):
    lock.release()  # a long poll lets other requests (a publish that ends it) run meanwhile
    try:
        wait_for_messages(queue, timeout)
    finally:
        lock.acquire()
Queue.wait_for_messages = waiting_unlocked
run_simple("127.0.0.1", int(sys.argv[1]), serial, threaded=True, request_handler=MotoRequestHandler)
"""


@contextmanager
def moto_server(*, serial: bool = True) -> Iterator[str]:
    """Run ``python -m moto.server`` on a free loopback port for the block and give its
    endpoint URL (``http://127.0.0.1:PORT``). Without moto installed the test is skipped off
    CI and fails under CI, as :func:`~kq.testing.servers.spawn` does for a missing program.

    ``serial`` (the default) runs it one request at a time. moto's threaded server applies concurrent
    requests to its in-memory state without a lock, so two DynamoDB ``UpdateItem ADD`` at once
    may lose one, and two SQS ``ReceiveMessage`` at once may both take one message, in moto
    (never in AWS, where each request is atomic); served one after the other, moto keeps the
    atomicity the real services guarantee. An SQS long poll waits without holding the others
    up, as in SQS.
    """
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        message = 'moto\'s server is not installed (pip install "moto[server]")'
        if under_ci():
            pytest.fail(f"{message}; kq's test extra installs it")
        pytest.skip(message)
    port = free_port()
    saved = {name: os.environ.get(name) for name in ENV}
    os.environ.update(ENV)
    try:
        argv = (
            [sys.executable, "-c", _SERIAL, str(port)]
            if serial
            else [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        )
        with spawn("moto", argv, port, env=ENV) as (host, port):
            yield f"http://{host}:{port}"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
