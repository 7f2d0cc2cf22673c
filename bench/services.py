"""The servers every run shares, and leaving them as they were found.

All Redis keys of a run live under a prefix of their own in a database nothing else here uses
(DB 10 unless ``--redis`` says otherwise: the tests use 14 and 15); RabbitMQ queues get names of
their own. After each run
the harness deletes exactly those keys and queues, so other users of the servers never see them.
"""

from __future__ import annotations

import itertools
import uuid
from urllib.parse import unquote, urlsplit

import amqp
import redis
from frameworks.benchkit import RunEnv

REDIS_URL = "redis://127.0.0.1:6379/10"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: Queues the three frameworks declare for a queue name on RabbitMQ: kq's dead-letter queue,
#: Dramatiq's delay and dead-letter queues.
_AMQP_SUFFIXES = ("", ".dlq", ".DQ", ".XQ")


class Services:
    """Redis and RabbitMQ for one harness invocation."""

    def __init__(self, redis_url: str = REDIS_URL, amqp_url: str = AMQP_URL) -> None:
        self.redis_url = redis_url
        self.amqp_url = amqp_url
        self.redis = redis.Redis.from_url(redis_url)
        self.invocation = uuid.uuid4().hex[:8]
        self._runs = itertools.count(1)

    def check(self) -> None:
        """Fail at once, naming the server, when one cannot be reached."""
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise SystemExit(f"bench: Redis at {self.redis_url} cannot be reached: {exc}") from None
        try:
            self._amqp().close()
        except (OSError, amqp.exceptions.AMQPError) as exc:
            raise SystemExit(f"bench: RabbitMQ at {self.amqp_url} cannot be reached: {exc}") from None

    def new_run(
        self, *, broker: str = "redis", results: bool = False, acks_late: bool = False, confirm: bool = False
    ) -> RunEnv:
        """Settings for one run: fresh key prefix and queue name, ``broker`` "redis" or "amqp"."""
        name = f"kqbench-{self.invocation}-{next(self._runs)}"
        return RunEnv(
            broker_url=self.redis_url if broker == "redis" else self.amqp_url,
            backend_url=self.redis_url if results else "",
            record_url=self.redis_url,
            prefix=f"{name}:",
            queue=name if broker == "amqp" else "bench",
            acks_late=acks_late,
            confirm=confirm,
        )

    def count(self, key: str) -> int:
        return int(self.redis.get(key) or 0)

    def cleanup(self, env: RunEnv) -> None:
        """Delete every key under the run's prefix and, on RabbitMQ, the run's queues."""
        keys = list(self.redis.scan_iter(match=f"{env.prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start : start + 1000])
        if not env.on_redis:
            connection = self._amqp()
            try:
                channel = connection.channel()
                for suffix in _AMQP_SUFFIXES:
                    channel.queue_delete(env.queue + suffix)
                channel.exchange_delete(env.queue)  # Celery's direct exchange of the same name
            finally:
                connection.close()

    def _amqp(self) -> amqp.Connection:
        url = urlsplit(self.amqp_url)
        vhost = unquote(url.path[1:]) if len(url.path) > 1 else "/"
        connection = amqp.Connection(
            host=f"{url.hostname}:{url.port or 5672}",
            userid=unquote(url.username or "guest"),
            password=unquote(url.password or "guest"),
            virtual_host=vhost,
        )
        connection.connect()
        return connection

    def server_versions(self) -> dict[str, str]:
        versions = {"Redis": str(self.redis.info("server")["redis_version"])}
        connection = self._amqp()
        try:
            version = connection.server_properties.get("version", "?")
            versions["RabbitMQ"] = version.decode() if isinstance(version, bytes) else str(version)
        finally:
            connection.close()
        return versions
