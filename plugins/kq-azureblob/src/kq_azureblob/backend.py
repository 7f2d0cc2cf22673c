"""The ``azureblockblob://`` result backend: one block blob per result in one container.

Layout (every name below starts with the ``key_prefix`` option, Celery's ``base_path``):

- ``celery-task-meta-<task id>``: a result. The body is the encoded result meta exactly as the
  kernel made it (what Celery's backend writes, so people and Celery clients can read it); the
  state and the expiry are the blob's metadata (``state``, ``expires_at``), so a read is one
  ``GET`` and :meth:`~AzureBlobBackend.cleanup` finds expired blobs from a listing alone.
- ``kq-claim/<name>``: a claim (unique tasks), the holder's value as UTF-8 text, its expiry in
  the metadata. The name is base64url-encoded: blob names must not end in ``.`` or ``/``, and a
  claim's name may.

A claim is atomic because the service checks the condition for every writer: it is created with
``If-None-Match: *`` (only if no blob has the name), a lapsed one is taken over with
``If-Match: <ETag>`` (only if nobody changed it since it was read), and released with a delete
under the same condition. A writer that loses a race reads again, after a short random pause.
There are no counters (see :data:`kq_azureblob.CAPABILITIES` for why).

Blob Storage cannot expire one blob at a time: reads honour ``expires_at`` whatever is stored,
and :meth:`~AzureBlobBackend.cleanup` deletes what has expired (each delete conditional on the
ETag it listed, so a result stored again meanwhile survives). In production a lifecycle management
rule on the container deletes old blobs too (see the plugin's README).
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient
from requests.adapters import HTTPAdapter

from kq.backend import BackendCapabilities
from kq.config import reject_unknown_options
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.keyvalue import META_NAMES, RESULT_PREFIX, KeyValueBackend, Record, metadata_expiry
from kq.redact import safe_url, scrub

from . import CAPABILITIES

SCHEME = "azureblockblob://"
CLAIM_PREFIX = "kq-claim/"
#: A claim's expiry, under the name results use for theirs (kq.keyvalue.META_NAMES: Azure wants C#
#: identifiers for metadata names, letters, digits and ``_``).
EXPIRES_AT = META_NAMES[1]
#: Longest random pause (s) after losing an ETag race; the pause grows to it with each loss.
MAX_BACKOFF = 0.05

R = TypeVar("R")


@dataclass(frozen=True)
class Options:
    """``result_backend_options`` this backend accepts."""

    #: The container, created on first write if missing. Celery's default, so a Celery client
    #: configured with the same connection finds the same results.
    container_name: str = "celery"
    #: Put in front of every blob name (Celery's ``azureblockblob_base_path``), e.g. ``"kq/"``.
    key_prefix: str = ""
    #: For the account-URL form only: a SAS token, an account key, ``{"account_name": ...,
    #: "account_key": ...}`` or an azure-identity credential object. ``None`` uses
    #: ``azure.identity.DefaultAzureCredential`` (``pip install azure-identity``).
    credential: Any = None
    #: Seconds to wait for a connection, and for each answer, before the call counts as failed.
    connection_timeout: float = 20.0
    read_timeout: float = 60.0
    #: How often the client retries a request that failed on the network or with a 5xx answer,
    #: with pauses of about a second, before the call raises BackendUnavailable (the kernel then
    #: retries whole stores itself, for ``result_store_timeout``).
    retries: int = 3
    #: HTTP connections kept open per backend: ``get_many`` reads with 16 threads.
    pool_size: int = 32


def parse_options(options: Mapping[str, Any]) -> Options:
    """Validate ``options`` (numbers may be strings, as they come from the environment)."""
    reject_unknown_options("kq-azureblob option(s)", options, [f.name for f in fields(Options)])
    values: dict[str, Any] = dict(options)
    for name in ("container_name", "key_prefix"):
        if name in values and not isinstance(values[name], str):
            raise ConfigurationError(f"result_backend_options {name} must be a string, got {values[name]!r}")
    container = values.get("container_name", Options.container_name)
    if (
        not (3 <= len(container) <= 63)
        or not container.replace("-", "").isalnum()
        or (container != container.lower() or container.startswith("-") or "--" in container)
    ):
        raise ConfigurationError(
            f"result_backend_options container_name must be 3-63 lower-case letters, digits and "
            f"single hyphens, starting with a letter or digit (Azure's rule), got {container!r}"
        )
    for name, least, kind in (
        ("connection_timeout", 0.001, float),
        ("read_timeout", 0.001, float),
        ("retries", 0, int),
        ("pool_size", 1, int),
    ):
        if name in values:
            values[name] = _number(name, values[name], least, kind)
    return Options(**values)


def _number(name: str, value: Any, least: float, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if (
        isinstance(value, bool)
        or number is None
        or number < least
        or (kind is int and isinstance(value, float))
    ):
        what = "a whole number" if kind is int else "a number of seconds"
        raise ConfigurationError(f"result_backend_options {name} must be {what} >= {least}, got {value!r}")
    return number


def _encode(name: str) -> str:
    """A counter or claim name as a blob name: exact (case, spaces, any Unicode) and safe."""
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")


def _expired(metadata: Mapping[str, str] | None, now: float | None = None) -> bool:
    expires_at = metadata_expiry(metadata)
    return expires_at is not None and (time.time() if now is None else now) >= expires_at


def _metadata(expires_at: float | None) -> dict[str, str]:
    return {} if expires_at is None else {EXPIRES_AT: repr(expires_at)}


class AzureBlobBackend(KeyValueBackend):
    """Results, counters and claims as block blobs in one container; see the module docstring.

    The URL is ``azureblockblob://`` followed by a storage connection string (as the Azure portal
    shows it, or Azurite's) or by the account's blob endpoint
    (``azureblockblob://https://<account>.blob.core.windows.net``) with the ``credential`` option.
    Options: :class:`Options`. One client per backend, safe to use from many threads.
    """

    capabilities: ClassVar[BackendCapabilities] = CAPABILITIES
    #: Blob Storage answers one blob per request: many results are written, and read, at once.
    write_concurrency: ClassVar[int] = 16

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.settings = parse_options(self.options)
        self.options["key_prefix"] = self.settings.key_prefix  # read by KeyValueBackend.key
        self.shown = safe_url(url)
        self._service = self._client(url, self.settings)
        self._container: ContainerClient = self._service.get_container_client(self.settings.container_name)
        self._container_ready = False
        self._container_lock = threading.Lock()

    # -- the client -----------------------------------------------------------------------

    def _client(self, url: str, settings: Options) -> BlobServiceClient:
        if not url.lower().startswith(SCHEME):
            raise ConfigurationError(
                f"{self.shown} is not an Azure Blob URL; expected "
                f"{SCHEME}<connection string> or {SCHEME}https://<account>..."
            )
        target = url[len(SCHEME) :]
        session = requests.Session()  # a pool big enough for get_many's threads
        adapter = HTTPAdapter(pool_connections=settings.pool_size, pool_maxsize=settings.pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        client_options: dict[str, Any] = {
            "transport": RequestsTransport(session=session, session_owner=True),
            "connection_timeout": settings.connection_timeout,
            "read_timeout": settings.read_timeout,
            "retry_total": settings.retries,
            "initial_backoff": 1,
            "increment_base": 2,
        }
        try:
            if target.lower().startswith(("https://", "http://")):
                credential = settings.credential
                if credential is None:
                    credential = self._default_credential()
                return BlobServiceClient(account_url=target, credential=credential, **client_options)
            if "=" not in target:
                raise ValueError("neither a connection string nor an account URL")
            if settings.credential is not None:
                client_options["credential"] = settings.credential
            return BlobServiceClient.from_connection_string(target, **client_options)
        except ValueError as exc:
            raise ConfigurationError(
                f"{self.shown}: {scrub(str(exc), url)}; expected {SCHEME}<connection string> "
                f"(DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;...) or "
                f"{SCHEME}https://<account>.blob.core.windows.net with the credential option"
            ) from None

    def _default_credential(self) -> Any:
        try:
            from azure.identity import DefaultAzureCredential  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            raise ConfigurationError(
                f"{self.shown} names an account URL without a credential: set "
                f"result_backend_options credential (a SAS token or account key), or "
                f"pip install azure-identity to use DefaultAzureCredential"
            ) from None
        return DefaultAzureCredential()

    def close(self) -> None:
        self._service.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate what means "the service cannot be used now" into BackendUnavailable: the
        network, a timeout, a 5xx answer, a refused credential (often a clock skew or a rotated
        key, which an operator fixes without restarting workers)."""
        try:
            yield
        except (ResourceNotFoundError, ResourceExistsError, ResourceModifiedError):
            raise  # answers the callers below act on
        except HttpResponseError as exc:
            if (
                exc.status_code is not None
                and exc.status_code < 500
                and not isinstance(exc, ClientAuthenticationError)
            ):
                raise
            raise self._unavailable(exc) from exc
        except AzureError as exc:  # ServiceRequestError, ServiceResponseError: the network
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        reason = " ".join(str(getattr(exc, "message", None) or exc).split())[:500]
        return BackendUnavailable(f"result backend {self.shown} is unavailable: {scrub(reason, self.url)}")

    def _call(self, action: Callable[[ContainerClient], R], *, write: bool = False) -> R:
        """``action(container)``, creating the container first when a write finds it missing."""
        with self._errors():
            try:
                return action(self._container)
            except ResourceNotFoundError as exc:
                if not write or getattr(exc, "error_code", None) != "ContainerNotFound":
                    raise
            self._ensure_container()
            return action(self._container)

    def _ensure_container(self) -> None:
        with self._container_lock:
            if self._container_ready:
                return
            try:
                self._container.create_container()
            except ResourceExistsError:  # another process was first
                pass
            self._container_ready = True

    # -- results --------------------------------------------------------------------------

    def put_record(self, key: str, record: Record) -> None:
        self._call(
            lambda container: container.upload_blob(
                key,
                record.payload,
                overwrite=True,
                metadata=record.metadata(),
            ),
            write=True,
        )

    def get_record(self, key: str) -> Record | None:
        found = self._read(key)
        if found is None:
            return None
        payload, metadata, _ = found
        # a blob some other program wrote under the key (Celery's has no state) reads as None
        return Record.from_metadata(payload, metadata)

    def delete_record(self, key: str) -> None:
        try:
            self._call(lambda container: container.delete_blob(key))
        except ResourceNotFoundError:
            pass

    def _read(self, name: str) -> tuple[bytes, dict[str, str], str] | None:
        """Body, metadata and ETag of blob ``name`` from one GET, or ``None`` if there is none."""

        def download(container: ContainerClient) -> tuple[bytes, dict[str, str], str]:
            downloader = container.download_blob(name)
            payload = downloader.readall()
            properties = downloader.properties
            return payload, dict(properties.metadata or {}), properties.etag

        try:
            return self._call(download)
        except ResourceNotFoundError:
            return None

    def _create(self, name: str, body: bytes, metadata: dict[str, str]) -> bool:
        """Create blob ``name`` if no blob has that name (``If-None-Match: *``); whether it did."""
        try:
            self._call(
                lambda container: container.upload_blob(name, body, overwrite=False, metadata=metadata),
                write=True,
            )
            return True
        except ResourceExistsError:
            return False

    def _replace(self, name: str, body: bytes, metadata: dict[str, str], etag: str) -> bool:
        """Replace blob ``name`` if it still has ``etag`` (``If-Match``); whether it did."""
        try:
            self._call(
                lambda container: container.upload_blob(
                    name,
                    body,
                    overwrite=True,
                    metadata=metadata,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            )
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False

    def _delete_if(self, name: str, etag: str) -> bool:
        """Delete blob ``name`` if it still has ``etag``; whether it did."""
        try:
            self._call(
                lambda container: container.delete_blob(
                    name, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            )
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False

    # -- claims ---------------------------------------------------------------------------

    def _claim(self, key: str) -> str:
        return f"{self.settings.key_prefix}{CLAIM_PREFIX}{_encode(key)}"

    def claim(self, key: str, value: str, expires: float) -> str | None:
        name, body = self._claim(key), value.encode("utf-8")
        attempt = 0
        while True:
            metadata = _metadata(time.time() + expires)
            if self._create(name, body, metadata):
                return None
            found = self._read(name)
            if found is not None:
                holder, held, etag = found
                if not _expired(held):
                    return holder.decode("utf-8")
                if self._replace(name, body, metadata, etag):  # take over a lapsed claim
                    return None
            _pause(attempt)
            attempt += 1

    def release(self, key: str, value: str) -> None:
        name = self._claim(key)
        found = self._read(name)
        if found is not None and found[0] == value.encode("utf-8"):
            self._delete_if(name, found[2])  # not if it lapsed and another took it meanwhile

    # -- expiry ---------------------------------------------------------------------------

    def scan_records(self) -> Iterator[tuple[str, float | None]]:
        for name, expires_at, _ in self._listing(RESULT_PREFIX):
            yield name, expires_at

    def _listing(self, namespace: str) -> Iterator[tuple[str, float | None, str]]:
        prefix = f"{self.settings.key_prefix}{namespace}"
        try:
            with self._errors():
                for blob in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                    yield blob.name, metadata_expiry(blob.metadata), blob.etag
        except ResourceNotFoundError:  # no container yet: nothing to list
            return

    def cleanup(self) -> int:
        """Delete expired results, counters and claims; return how many. Each delete is
        conditional on the ETag listed, so a blob rewritten since (a counter counted again, a
        result stored again) is left alone."""
        now, removed = time.time(), 0
        for namespace in (RESULT_PREFIX, CLAIM_PREFIX):
            expired = [
                (name, etag)
                for name, expires_at, etag in self._listing(namespace)
                if expires_at is not None and expires_at <= now
            ]
            removed += sum(self._delete_if(name, etag) for name, etag in expired)
        return removed


def _pause(attempt: int) -> None:
    """Wait a random moment after losing a race, longer after each loss (up to MAX_BACKOFF)."""
    time.sleep(random.uniform(0, min(MAX_BACKOFF, 0.002 * 2 ** min(attempt, 10))))
