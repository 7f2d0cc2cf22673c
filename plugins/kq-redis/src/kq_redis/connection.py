"""What the broker and the result backend share: URLs, options, the connection pool, and the
translation of redis-py's connection errors into kq's.

URLs follow kombu and Celery: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` for
TLS (redis-py's query parameters such as ``?ssl_cert_reqs=required`` apply), and
``redis+socket:///path/to/redis.sock[?virtual_host=db]`` for a Unix socket.

Every pool is built with redis-py's retries switched off (``Retry(NoBackoff(), 0)``, RESP2):
retrying, backing off and reconnecting is the kernel's policy (the worker's ``_connection_lost``,
the app's publish retries, the runner's result-store retries), and a silent retry inside
redis-py could run a non-idempotent command such as the fetch script twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kq.config import reject_unknown_options, safe_url
from kq.exceptions import ConfigurationError
from kq.redact import scrub

#: redis-py errors that mean "the server cannot be used right now; try again later". A replica
#: promoted or demoted under us answers READONLY, which a reconnect to the new master cures.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError and AuthenticationError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)

PRIORITY_DIGITS = range(10)


@attrs.frozen
class Options:
    """Validated options; the broker and the backend each accept only the names they use."""

    #: Seconds a fetched, unacked message stays leased before any consumer gives it back.
    visibility_timeout: float = 3600.0
    #: kombu's ``priority_steps``: the wire priorities that get a list of their own.
    priority_steps: tuple[int, ...] = (0, 3, 6, 9)
    #: kombu's and Celery's ``global_keyprefix``: prepended to every key and channel name.
    global_keyprefix: str = ""
    #: kombu's names for the hash of unacked messages and its index by delivery time.
    unacked_key: str = "unacked"
    unacked_index_key: str = "unacked_index"
    #: Seconds a reply may take before the connection counts as dead (blocking waits are
    #: kept well below it); and seconds to wait for a connection to be established.
    socket_timeout: float = 30.0
    socket_connect_timeout: float = 5.0
    #: Keep a message published with an ``eta`` in kq's delayed set until it is due (true), or
    #: push it to its queue at once, where the worker that takes it holds it until it is due,
    #: as kombu does (false): Celery workers read only the queue.
    native_delay: bool = True


TRANSPORT_OPTIONS = (
    "visibility_timeout",
    "priority_steps",
    "global_keyprefix",
    "unacked_key",
    "unacked_index_key",
    "socket_timeout",
    "socket_connect_timeout",
    "native_delay",
)
BACKEND_OPTIONS = ("global_keyprefix", "socket_timeout", "socket_connect_timeout")


def parse_options(options: Mapping[str, Any], accepted: Collection[str]) -> Options:
    """Validate ``options``; numbers may come as strings (from ``KQ_*`` environment JSON).

    Unknown names are an error, so that a misspelt option cannot silently keep its default.
    """
    reject_unknown_options("redis option(s)", options, accepted)
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name == "priority_steps":
            values[name] = _priority_steps(value)
        elif name in ("global_keyprefix", "unacked_key", "unacked_index_key"):
            if not isinstance(value, str) or (name != "global_keyprefix" and not value):
                raise ConfigurationError(f"redis option {name} must be a string, got {value!r}")
            values[name] = value
        elif name == "native_delay":
            if not isinstance(value, bool):
                raise ConfigurationError(f"redis option native_delay must be true or false, got {value!r}")
            values[name] = value
        else:
            values[name] = _positive_number(name, value)
    return Options(**values)


def _priority_steps(value: Any) -> tuple[int, ...]:
    try:
        steps = tuple(int(step) for step in value)
    except (TypeError, ValueError):
        steps = ()
    if (
        not steps
        or steps[0] != 0
        or any(s not in PRIORITY_DIGITS for s in steps)
        or list(steps) != sorted(set(steps))
    ):
        raise ConfigurationError(
            f"redis option priority_steps must be increasing whole numbers from 0 to 9 starting "
            f"with 0 (kombu's default is [0, 3, 6, 9]), got {value!r}"
        )
    return steps


def _positive_number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number > 0 or math.isinf(number):
        raise ConfigurationError(f"redis option {name} must be a number > 0, got {value!r}")
    return number


def connection_pool(url: str, options: Options, schemes: Collection[str]) -> redis.ConnectionPool:
    """A redis-py pool for ``url``; nothing connects until the first command."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ConfigurationError(
            f"{safe_url(url)} is not a Redis URL; expected one of: "
            + ", ".join(f"{s}://" for s in sorted(schemes))
        )
    common: dict[str, Any] = {
        "protocol": 2,
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": options.socket_connect_timeout,
    }
    if scheme != "redis+socket":
        try:
            return redis.ConnectionPool.from_url(url, socket_keepalive=True, **common)
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {safe_url(url)}: {scrub(str(exc), url)} "
                f"(percent-encode any / ? # @ in the password)"
            ) from None
    if parts.hostname or not parts.path or parts.path == "/":
        raise ConfigurationError(
            f"{safe_url(url)}: a redis+socket URL names a socket file and no host, like "
            f"redis+socket:///var/run/redis/redis.sock?virtual_host=0"
        )
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    database = query.pop("virtual_host", query.pop("db", "0")).lstrip("/") or "0"
    if query or not database.isdigit():
        raise ConfigurationError(f"{safe_url(url)}: a redis+socket URL takes only ?virtual_host=<db number>")
    return redis.ConnectionPool(
        connection_class=redis.UnixDomainSocketConnection,
        path=parts.path,
        db=int(database),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **common,
    )


class Unavailable:
    """A reusable ``with`` block that re-raises redis-py's connection errors as ``error``,
    naming ``url`` without its password, after calling ``on_error`` (if given).

    A class rather than a generator context manager: it wraps every broker and backend call,
    and one built once per client costs a tenth of a fresh generator per call.
    """

    def __init__(
        self, error: type[Exception], what: str, url: str, on_error: Callable[[], None] | None = None
    ) -> None:
        self._error, self._what, self._url, self._on_error = error, what, url, on_error

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if kind is None or not issubclass(kind, CONNECTION_ERRORS):
            return
        if self._on_error is not None:
            self._on_error()
        raise self._error(
            f"{self._what} at {safe_url(self._url)} is unavailable: {scrub(str(exc), self._url)}"
        ) from exc
