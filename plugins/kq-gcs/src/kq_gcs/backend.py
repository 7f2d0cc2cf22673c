"""The ``gs://`` result backend: one object per result in one Cloud Storage bucket.

``gs://<bucket>/<prefix>`` (Celery's form): every result is the object
``<prefix>/celery-task-meta-<task id>`` (or ``celery-task-meta-<task id>`` with no prefix). Its
content is the encoded result meta exactly as the kernel made it (what Celery's backend writes,
so people and Celery clients can read it); the state and the expiry are the object's custom
metadata (``state``, ``expires_at``), and the expiry is also its ``customTime``, so that a
lifecycle rule (``daysSinceCustomTime``) can delete expired results without any process running.

A read is two requests: the object's metadata, then its content for exactly the generation
that metadata described (``ifGenerationMatch``), so a result replaced between the two is read
again rather than mixed. Reads honour ``expires_at`` whatever is stored, and :meth:`cleanup`
deletes what has expired, each delete conditional on the generation it listed.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[import-untyped, attr-defined, unused-ignore]
from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped, unused-ignore]

from kq.backend import BackendCapabilities
from kq.config import reject_unknown_options
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.keyvalue import META_NAMES, RESULT_PREFIX, KeyValueBackend, Record, metadata_expiry
from kq.redact import safe_url, scrub

from . import CAPABILITIES

#: A read retries this often when the result is replaced between its two requests.
READ_ATTEMPTS = 5

R = TypeVar("R")


@dataclass(frozen=True)
class Options:
    """``result_backend_options`` this backend accepts."""

    #: The Google Cloud project; ``None`` takes the credentials' or the environment's.
    project: str | None = None
    #: Put in front of every object name; the URL's path is the default (``gs://bucket/kq`` is
    #: ``kq/``).
    key_prefix: str | None = None
    #: ``google.auth`` credentials, or the path of a service-account JSON key file; ``None``
    #: finds them the standard way (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server,
    #: ``gcloud auth application-default login``).
    credentials: Any = None
    #: Another endpoint for the JSON API, such as a local emulator (``http://127.0.0.1:9023``);
    #: anonymous credentials are used unless ``credentials`` is given. The client also honours
    #: ``STORAGE_EMULATOR_HOST``.
    endpoint: str | None = None
    #: Seconds to wait for each request (connecting, then each answer).
    timeout: float = 60.0
    #: Seconds the client keeps retrying a request that failed on the network or with a 5xx or
    #: 429 answer (with growing pauses) before the call raises BackendUnavailable; 0 for no
    #: retries. The kernel also retries whole stores itself, for ``result_store_timeout``.
    retry_timeout: float = 30.0


def parse_options(options: Mapping[str, Any]) -> Options:
    """Validate ``options`` (numbers may be strings, as they come from the environment)."""
    reject_unknown_options("kq-gcs option(s)", options, [f.name for f in fields(Options)])
    values: dict[str, Any] = dict(options)
    for name in ("project", "key_prefix", "endpoint"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise ConfigurationError(f"result_backend_options {name} must be a string, got {values[name]!r}")
    for name, zero_ok in (("timeout", False), ("retry_timeout", True)):
        if name in values:
            try:
                values[name] = float(values[name])
            except (TypeError, ValueError):
                values[name] = -1.0
            if isinstance(options[name], bool) or values[name] < 0 or (values[name] == 0 and not zero_ok):
                raise ConfigurationError(
                    f"result_backend_options {name} must be a number of seconds "
                    f"{'>= 0' if zero_ok else '> 0'}, got {options[name]!r}"
                )
    return Options(**values)


def parse_url(url: str) -> tuple[str, str]:
    """``(bucket, key prefix)`` of a ``gs://bucket/prefix`` URL; the prefix ends in ``/``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "gs" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{safe_url(url)} is not a Cloud Storage result backend URL; expected gs://<bucket> or "
            f"gs://<bucket>/<prefix>"
        )
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class GCSBackend(KeyValueBackend):
    """Results as objects in one bucket; see the module docstring. The bucket must exist (create
    it with the location, storage class and lifecycle rules you want). Options: :class:`Options`.
    One client per backend, safe to use from many threads."""

    capabilities: ClassVar[BackendCapabilities] = CAPABILITIES
    #: The client's HTTP session keeps 10 connections per host: as many threads as that.
    read_concurrency: ClassVar[int] = 10
    write_concurrency: ClassVar[int] = 10

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.settings = parse_options(self.options)
        self.bucket_name, url_prefix = parse_url(url)
        prefix = url_prefix if self.settings.key_prefix is None else self.settings.key_prefix
        self.options["key_prefix"] = prefix  # read by KeyValueBackend.key
        self.shown = safe_url(url)
        self._client = self._make_client(self.settings)
        self._bucket = self._client.bucket(self.bucket_name)
        #: What every request is given: a result write is safe to retry (it writes the same
        #: bytes again), so writes are retried too, unlike the client's default for uploads.
        self._request: dict[str, Any] = {
            "timeout": self.settings.timeout,
            "retry": DEFAULT_RETRY.with_timeout(self.settings.retry_timeout)
            if self.settings.retry_timeout
            else None,
        }

    def _make_client(self, settings: Options) -> storage.Client:
        credentials = settings.credentials
        if isinstance(credentials, (str, os.PathLike)):
            from google.oauth2 import service_account

            try:
                credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call, unused-ignore]
                    os.fspath(credentials)
                )
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"result_backend_options credentials: cannot read a service-account key from "
                    f"{os.fspath(settings.credentials)!r}: {exc}"
                ) from None
        client_options = None
        if settings.endpoint:
            client_options = {"api_endpoint": settings.endpoint}
            if credentials is None:
                credentials = AnonymousCredentials()  # type: ignore[no-untyped-call, unused-ignore]
        project = settings.project
        if project is None and isinstance(credentials, AnonymousCredentials):
            project = "kq"  # the emulator needs none, the client wants one
        try:
            return storage.Client(project=project, credentials=credentials, client_options=client_options)
        except auth.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"{self.shown}: no Google Cloud credentials found ({exc}); set "
                f"GOOGLE_APPLICATION_CREDENTIALS or result_backend_options credentials"
            ) from None

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate what means "the service cannot be used now" into BackendUnavailable: the
        network, a timeout, a 5xx or 429 answer, refused or expired credentials."""
        try:
            yield
        except (api.NotFound, api.PreconditionFailed):
            raise  # answers the callers below act on
        except (api.GoogleAPICallError, api.RetryError, auth.GoogleAuthError) as exc:
            raise self._unavailable(str(exc)) from exc
        except requests.RequestException as exc:
            raise self._unavailable(str(exc)) from exc

    def _unavailable(self, reason: str) -> BackendUnavailable:
        reason = " ".join(reason.split())[:500]
        return BackendUnavailable(f"result backend {self.shown} is unavailable: {scrub(reason, self.url)}")

    def _call(self, action: Callable[[], R]) -> R:
        with self._errors():
            return action()

    # -- results --------------------------------------------------------------------------

    def put_record(self, key: str, record: Record) -> None:
        blob = self._bucket.blob(key)
        if record.expires_at is not None:
            blob.custom_time = datetime.fromtimestamp(record.expires_at, timezone.utc)
        blob.metadata = record.metadata()
        try:
            self._call(
                lambda: blob.upload_from_string(
                    record.payload, content_type="application/octet-stream", **self._request
                )
            )
        except api.NotFound as exc:  # an operator can create it without restarting workers
            raise self._no_bucket() from exc

    def _no_bucket(self) -> BackendUnavailable:
        return self._unavailable(f"bucket {self.bucket_name!r} does not exist")

    def get_record(self, key: str) -> Record | None:
        for _ in range(READ_ATTEMPTS):
            blob = self._call(lambda: self._bucket.get_blob(key, **self._request))
            if blob is None:
                return None
            if not (blob.metadata or {}).get(META_NAMES[0]):
                return None  # an object some other program wrote under the key (Celery's has none)
            try:
                payload = self._call(
                    functools.partial(
                        blob.download_as_bytes, if_generation_match=blob.generation, **self._request
                    )
                )
            except api.NotFound:
                return None  # deleted between the two requests
            except api.PreconditionFailed:
                continue  # replaced between the two requests: read the new one
            return Record.from_metadata(payload, blob.metadata)
        raise self._unavailable(f"{key} kept changing while it was read")

    def delete_record(self, key: str) -> None:
        try:
            self._call(lambda: self._bucket.delete_blob(key, **self._request))
        except api.NotFound:
            pass

    # -- expiry ---------------------------------------------------------------------------

    def _listing(self) -> Iterator[storage.Blob]:
        prefix = f"{self.options['key_prefix']}{RESULT_PREFIX}"
        try:
            with self._errors():
                yield from self._client.list_blobs(self._bucket, prefix=prefix, **self._request)
        except api.NotFound as exc:
            raise self._no_bucket() from exc

    def scan_records(self) -> Iterator[tuple[str, float | None]]:
        for blob in self._listing():
            yield blob.name, metadata_expiry(blob.metadata)

    def cleanup(self) -> int:
        """Delete expired results; return how many. Each delete is conditional on the generation
        listed, so a result stored again meanwhile is left alone."""
        now, removed = time.time(), 0
        expired = [
            (blob.name, blob.generation)
            for blob in self._listing()
            if (expires_at := metadata_expiry(blob.metadata)) is not None and expires_at <= now
        ]
        for name, generation in expired:
            try:
                self._call(
                    functools.partial(
                        self._bucket.delete_blob, name, if_generation_match=generation, **self._request
                    )
                )
                removed += 1
            except (api.NotFound, api.PreconditionFailed):
                pass
        return removed
