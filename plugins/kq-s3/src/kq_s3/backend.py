"""The ``s3://bucket/prefix`` result backend: one S3 object per result.

The object's body is the result meta exactly as the kernel encoded it (JSON with the default
serializer, so a person or another program can read it with any S3 tool); the state and the
expiry travel as user metadata (``x-amz-meta-kq-state``, ``x-amz-meta-kq-expires-at``, seconds
since the epoch), so nothing is wrapped around the payload.

S3 never deletes an object when its result expires. Reads check the expiry, so an expired
result reads as missing on time; :meth:`S3Backend.cleanup` lists the prefix and deletes the
expired ones (a HEAD request per object, to read its metadata), and in production an S3
lifecycle rule on the prefix does the same for free, to the day.

No counters and no claims: S3's conditional writes could make them, but each would be a
read-modify-write loop of several requests that fails over and over under contention (a chord
of 1,000 tasks finishing at once). Chords use the kernel's ``kq.chord_unlock`` polling task
instead, and unique tasks need a backend with claims (Redis, SQLite, a database, DynamoDB).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from kq.backend import BackendCapabilities
from kq.config import reject_unknown_options, safe_url
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.keyvalue import KeyValueBackend, Record, metadata_expiry

from . import CAPABILITIES

log = logging.getLogger("kq.s3")

#: User metadata names (S3 keeps them lower-case, as ``x-amz-meta-<name>`` headers).
META_NAMES = STATE_META, EXPIRES_META = "kq-state", "kq-expires-at"
#: Error codes that mean "try again later", not "this request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
    }
)
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
OPTIONS = frozenset(
    {
        "region",
        "endpoint_url",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "profile",
        "client_config",
        "key_prefix",
        "create_bucket",
    }
)


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``; the prefix may be left
    out (results then sit at the top of the bucket)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or "@" in parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            f"result_backend {safe_url(url)!r}: expected s3://BUCKET/PREFIX (credentials, region "
            f"and endpoint go in result_backend_options, not in the URL)"
        )
    prefix = unquote(parts.path).strip("/")
    return parts.netloc, prefix + "/" if prefix else ""


class S3Backend(KeyValueBackend):
    """Results as S3 objects. Options (``result_backend_options``):

    ``region``, ``endpoint_url`` (MinIO, Ceph, LocalStack, moto, another cloud's S3 API),
    ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``, ``profile``: where
    and as whom (left out, boto3's usual chain: environment, ``~/.aws``, instance or task role);
    ``client_config``: botocore ``Config`` arguments (timeouts, retries, ``{"s3":
    {"addressing_style": "path"}}``); ``key_prefix``: put after the URL's prefix in front of
    every key; ``create_bucket`` (default false): create the bucket when it is missing.
    """

    capabilities: ClassVar[BackendCapabilities] = CAPABILITIES
    #: S3 has no batch write: a group's results are PUT several at a time (KeyValueBackend).
    write_concurrency: ClassVar[int] = 16

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        reject_unknown_options("s3:// result_backend_options option(s)", self.options, OPTIONS)
        self.bucket, self.prefix = parse_url(url)
        session = boto3.session.Session(
            region_name=self.options.get("region"),
            profile_name=self.options.get("profile"),
            aws_access_key_id=self.options.get("aws_access_key_id"),
            aws_secret_access_key=self.options.get("aws_secret_access_key"),
            aws_session_token=self.options.get("aws_session_token"),
        )
        # get_many reads with KeyValueBackend.read_concurrency threads on one client.
        config = Config(**{"max_pool_connections": 32, **self.options.get("client_config", {})})
        self._s3 = session.client("s3", endpoint_url=self.options.get("endpoint_url"), config=config)
        self._checked = not self.options.get("create_bucket", False)

    def key(self, task_id: str) -> str:
        return self.prefix + super().key(task_id)

    # -- requests ---------------------------------------------------------------------------

    def _call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 request; connection failures and throttling raise
        :class:`BackendUnavailable` (the worker retries those), a missing key returns ``None``."""
        if not self._checked:
            self._ensure_bucket()
        try:
            return getattr(self._s3, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if error.get("Code") in MISSING_CODES:
                return None
            if error.get("Code") == "NoSuchBucket":
                raise ConfigurationError(
                    f"S3 bucket {self.bucket} does not exist: create it, or set the backend option "
                    f"create_bucket"
                ) from exc
            if error.get("Code") in TRANSIENT_CODES or status >= 500:
                raise self._unavailable(exc) from exc
            raise
        except (BotoConnectionError, HTTPClientError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        where = self.options.get("endpoint_url") or "S3"
        return BackendUnavailable(f"bucket {self.bucket} at {where} failed: {exc}")

    def _ensure_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in MISSING_CODES | {"NoSuchBucket"}:
                raise
            region = self._s3.meta.region_name
            extra = (
                {}
                if region in (None, "us-east-1")
                else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            try:
                self._s3.create_bucket(Bucket=self.bucket, **extra)
                log.info("kq: created S3 bucket %s", self.bucket)
            except ClientError as exc:  # another process created it first
                if exc.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise
        except (BotoConnectionError, HTTPClientError) as exc:
            raise self._unavailable(exc) from exc
        self._checked = True

    # -- records ----------------------------------------------------------------------------

    def put_record(self, key: str, record: Record) -> None:
        self._call(
            "put_object",
            Key=key,
            Body=record.payload,
            Metadata=record.metadata(META_NAMES),
            ContentType="application/octet-stream",
        )

    def get_record(self, key: str) -> Record | None:
        found = self._call("get_object", Key=key)
        if found is None:
            return None
        with found["Body"] as body:
            payload = body.read()
        # an object kq did not write (no kq-state) reads as missing
        return Record.from_metadata(payload, found.get("Metadata"), META_NAMES)

    def delete_record(self, key: str) -> None:
        self._call("delete_object", Key=key)

    def scan_records(self) -> Iterable[tuple[str, float | None]]:
        """Every result object under the prefix with its expiry: a listing, then a HEAD per
        object (listings carry no metadata), several at a time."""
        keys = list(self._list(self.key("")))
        if not keys:
            return []
        with ThreadPoolExecutor(min(self.read_concurrency, len(keys))) as threads:
            return [item for item in threads.map(self._expiry, keys) if item is not None]

    def _list(self, prefix: str) -> Iterator[str]:
        if not self._checked:
            self._ensure_bucket()
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield item["Key"]
        except (BotoConnectionError, HTTPClientError) as exc:
            raise self._unavailable(exc) from exc

    def _expiry(self, key: str) -> tuple[str, float | None] | None:
        head = self._call("head_object", Key=key)
        if head is None:  # deleted meanwhile
            return None
        metadata = head.get("Metadata") or {}
        if STATE_META not in metadata:  # not kq's
            return None
        return key, metadata_expiry(metadata, META_NAMES)

    def close(self) -> None:
        self._s3.close()
