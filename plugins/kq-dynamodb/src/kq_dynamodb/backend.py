"""The ``dynamodb://`` result backend: one DynamoDB table holds results, counters and claims.

Each result is an item keyed by the string ``id`` (``celery-task-meta-<task id>``, after the
``key_prefix`` option) with the attributes ``state`` (string), ``payload`` (binary: the
encoded result meta as the kernel made it) and ``expires_at`` (number: seconds since the
epoch). ``expires_at`` is the table's TTL attribute, so DynamoDB deletes expired items by
itself; it does so late (typically within a few days), so every read checks the expiry too.

Counters (chord header counts, global rate limits) are items ``kq-counter-<name>`` updated with
``UpdateItem ADD``, and claims (unique tasks) items ``kq-claim-<name>`` written with a
conditional ``PutItem`` that succeeds only when the item is missing or expired. Both are single
atomic requests in DynamoDB, so they hold across every process and machine using the table.

Reads are strongly consistent by default (``consistent_read``): a result stored by a worker is
visible to the next read, at twice the read cost of an eventually consistent one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoRegionError
from botocore.exceptions import ConnectionError as BotoConnectionError

from kq.backend import BackendCapabilities, StoredResult
from kq.config import reject_unknown_options, safe_url
from kq.exceptions import BackendUnavailable, ConfigurationError
from kq.keyvalue import KeyValueBackend, Record

from . import CAPABILITIES

log = logging.getLogger("kq.dynamodb")

DEFAULT_TABLE = "kq_results"
#: Attribute names of the table's items.
KEY, STATE, PAYLOAD, EXPIRES, HOLDER, VALUE = "id", "state", "payload", "expires_at", "holder", "value"
COUNTER_PREFIX = "kq-counter-"
CLAIM_PREFIX = "kq-claim-"
#: DynamoDB's limits: keys per BatchGetItem, items per BatchWriteItem.
BATCH_GET, BATCH_WRITE = 100, 25
#: Error codes that mean "try again later", not "this request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)
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
        "create_table",
        "consistent_read",
        "read_capacity",
        "write_capacity",
    }
)


def parse_url(url: str) -> tuple[str | None, str]:
    """``dynamodb://region/table`` -> ``(region or None, table)``; both parts may be left out
    (``dynamodb://``, ``dynamodb:///table``): the region then comes from the ``region`` option
    or boto3's usual chain, the table defaults to :data:`DEFAULT_TABLE`."""
    parts = urlsplit(url)
    if parts.scheme != "dynamodb" or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigurationError(
            f"result_backend {safe_url(url)!r}: expected dynamodb://REGION/TABLE (credentials "
            f"and the endpoint go in result_backend_options, not in the URL)"
        )
    table = unquote(parts.path.strip("/")) or DEFAULT_TABLE
    if not (3 <= len(table) <= 255) or not all(c.isalnum() or c in "_.-" for c in table):
        raise ConfigurationError(
            f"result_backend {url!r}: {table!r} is not a DynamoDB table name "
            f"(3-255 letters, digits, '_', '-' or '.')"
        )
    return (parts.netloc or None), table


def _transient(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return error.get("Code") in TRANSIENT_CODES or status >= 500


def _conditional_failure(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


class DynamoDBBackend(KeyValueBackend):
    """Results in a DynamoDB table. Options (``result_backend_options``):

    ``region``, ``endpoint_url`` (DynamoDB Local, LocalStack, moto), ``aws_access_key_id``,
    ``aws_secret_access_key``, ``aws_session_token``, ``profile``: where and as whom (left out,
    boto3's usual chain: environment, ``~/.aws``, instance or task role); ``client_config``:
    botocore ``Config`` arguments (timeouts, retries); ``key_prefix``: put in front of every
    item key; ``create_table`` (default true): create the table, on demand capacity and TTL on
    ``expires_at``, when it is missing; ``read_capacity``/``write_capacity``: create it with
    provisioned capacity instead; ``consistent_read`` (default true).
    """

    capabilities: ClassVar[BackendCapabilities] = CAPABILITIES

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        reject_unknown_options("dynamodb:// result_backend_options option(s)", self.options, OPTIONS)
        region, self.table = parse_url(url)
        self.region = self.options.get("region") or region
        self.consistent_read = bool(self.options.get("consistent_read", True))
        self.create_table = bool(self.options.get("create_table", True))
        try:
            session = boto3.session.Session(
                region_name=self.region,
                profile_name=self.options.get("profile"),
                aws_access_key_id=self.options.get("aws_access_key_id"),
                aws_secret_access_key=self.options.get("aws_secret_access_key"),
                aws_session_token=self.options.get("aws_session_token"),
            )
            # get_many reads with KeyValueBackend.read_concurrency threads on one client.
            config = Config(**{"max_pool_connections": 32, **self.options.get("client_config", {})})
            self._db = session.client(
                "dynamodb", endpoint_url=self.options.get("endpoint_url"), config=config
            )
        except NoRegionError as exc:
            raise ConfigurationError(
                f"result_backend {url!r}: no AWS region: name it in the URL (dynamodb://REGION/"
                f"TABLE), the 'region' option or AWS_DEFAULT_REGION"
            ) from exc
        self._ready = False
        self._ready_lock = threading.Lock()

    # -- requests ---------------------------------------------------------------------------

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB request, after making sure the table exists; connection failures and
        throttling raise :class:`BackendUnavailable` (the worker retries those)."""
        if not self._ready:
            self._ensure_table()
        return self._request(operation, **kwargs)

    def _request(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = getattr(self._db, operation)(**kwargs)
            return answer
        except ClientError as exc:
            if _transient(exc):
                raise self._unavailable(exc) from exc
            raise
        except (BotoConnectionError, HTTPClientError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        where = self.options.get("endpoint_url") or f"region {self.region or '(default)'}"
        return BackendUnavailable(f"DynamoDB table {self.table} at {where} failed: {exc}")

    def _ensure_table(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            try:
                status = self._request("describe_table", TableName=self.table)["Table"]["TableStatus"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                if not self.create_table:
                    raise ConfigurationError(
                        f"DynamoDB table {self.table} does not exist (create_table is off)"
                    ) from exc
                self._create()
            else:
                if status == "CREATING":
                    self._db.get_waiter("table_exists").wait(TableName=self.table)
                self._check_ttl()
            self._ready = True

    def _check_ttl(self) -> None:
        """Warn once per process and table when DynamoDB's TTL is off on ``expires_at``: reads
        still honour the expiry, but nothing ever deletes the expired items."""
        try:
            ttl = self._request("describe_time_to_live", TableName=self.table)["TimeToLiveDescription"]
        except (ClientError, BackendUnavailable) as exc:  # no permission for it: not worth failing
            log.debug("kq: could not read the TTL setting of DynamoDB table %s: %s", self.table, exc)
            return
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != EXPIRES:
            log.warning(
                "kq: DynamoDB table %s has no TTL on %r, so expired results are never deleted; "
                "enable it: aws dynamodb update-time-to-live --table-name %s "
                "--time-to-live-specification Enabled=true,AttributeName=%s",
                self.table,
                EXPIRES,
                self.table,
                EXPIRES,
            )

    def _create(self) -> None:
        capacity: dict[str, Any] = {"BillingMode": "PAY_PER_REQUEST"}
        if "read_capacity" in self.options or "write_capacity" in self.options:
            capacity = {
                "BillingMode": "PROVISIONED",
                "ProvisionedThroughput": {
                    "ReadCapacityUnits": int(self.options.get("read_capacity", 5)),
                    "WriteCapacityUnits": int(self.options.get("write_capacity", 5)),
                },
            }
        try:
            self._request(
                "create_table",
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                **capacity,
            )
            log.info("kq: created DynamoDB table %s", self.table)
        except ClientError as exc:  # another process created it first
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        self._db.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        try:
            self._request(
                "update_time_to_live",
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES},
            )
        except ClientError as exc:  # enabled already, by the process that created the table
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise

    def _key(self, key: str) -> dict[str, Any]:
        return {KEY: {"S": key}}

    # -- records ----------------------------------------------------------------------------

    @staticmethod
    def _item(key: str, record: Record) -> dict[str, Any]:
        item: dict[str, Any] = {KEY: {"S": key}, STATE: {"S": record.state}, PAYLOAD: {"B": record.payload}}
        if record.expires_at is not None:
            item[EXPIRES] = {"N": repr(record.expires_at)}
        return item

    @staticmethod
    def _record(item: Mapping[str, Any] | None) -> Record | None:
        if not item or STATE not in item or PAYLOAD not in item:
            return None
        expires = item.get(EXPIRES)
        return Record(item[STATE]["S"], bytes(item[PAYLOAD]["B"]), float(expires["N"]) if expires else None)

    def put_record(self, key: str, record: Record) -> None:
        self._call("put_item", TableName=self.table, Item=self._item(key, record))

    def get_record(self, key: str) -> Record | None:
        found = self._call(
            "get_item", TableName=self.table, Key=self._key(key), ConsistentRead=self.consistent_read
        )
        return self._record(found.get("Item"))

    def delete_record(self, key: str) -> None:
        self._call("delete_item", TableName=self.table, Key=self._key(key))

    def store_many(self, results: Sequence[StoredResult], ttl: float | None) -> None:
        """``BatchWriteItem``, 25 items a request; what DynamoDB leaves unprocessed (throttling)
        is sent again with backoff. A batch may not name one key twice: the last result wins."""
        if len(results) == 1:
            return super().store_many(results, ttl)
        expires_at = None if ttl is None else time.time() + ttl
        items = {
            self.key(r.task_id): self._item(self.key(r.task_id), Record(r.state, r.payload, expires_at))
            for r in results
        }
        requests = [{"PutRequest": {"Item": item}} for item in items.values()]
        for start in range(0, len(requests), BATCH_WRITE):
            pending = {self.table: requests[start : start + BATCH_WRITE]}
            for attempt in range(8):
                pending = self._call("batch_write_item", RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise BackendUnavailable(f"DynamoDB table {self.table} kept refusing writes (throttled)")

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """``BatchGetItem``, 100 keys a request; unprocessed keys are asked again with backoff."""
        if len(task_ids) < 2:
            return [self.get(task_id) for task_id in task_ids]
        keys = list(dict.fromkeys(self.key(task_id) for task_id in task_ids))
        found: dict[str, Record | None] = {}
        for start in range(0, len(keys), BATCH_GET):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [self._key(k) for k in keys[start : start + BATCH_GET]],
                    "ConsistentRead": self.consistent_read,
                }
            }
            for attempt in range(8):
                answer = self._call("batch_get_item", RequestItems=pending)
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[item[KEY]["S"]] = self._record(item)
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise BackendUnavailable(f"DynamoDB table {self.table} kept refusing reads (throttled)")
        return [self._stored(task_id, found.get(self.key(task_id))) for task_id in task_ids]

    # -- counters ---------------------------------------------------------------------------

    def incr(self, key: str, amount: int = 1, expires: float | None = None) -> int:
        """``UpdateItem ADD`` unless the counter has expired; an expired one is set to
        ``amount`` by a second conditional update (only if it is still expired, so of two
        callers restarting it at once one restarts it and the other adds to that)."""
        now = time.time()
        names = {"#v": VALUE, "#e": EXPIRES}
        values: dict[str, Any] = {":a": {"N": str(int(amount))}, ":now": {"N": repr(now)}}
        if expires is None:
            keep, reset = "REMOVE #e", "SET #v = :a REMOVE #e"
        else:
            values[":e"] = {"N": repr(now + expires)}
            keep, reset = "SET #e = :e", "SET #v = :a, #e = :e"
        item = self._key(self.options.get("key_prefix", "") + COUNTER_PREFIX + key)
        while True:
            try:
                answer = self._call(
                    "update_item",
                    TableName=self.table,
                    Key=item,
                    UpdateExpression=f"ADD #v :a {keep}",
                    ConditionExpression="attribute_not_exists(#e) OR #e > :now",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
                return int(answer["Attributes"][VALUE]["N"])
            except ClientError as exc:
                if not _conditional_failure(exc):
                    raise
            try:
                self._call(
                    "update_item",
                    TableName=self.table,
                    Key=item,
                    UpdateExpression=reset,
                    ConditionExpression="#e <= :now",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
                return int(amount)
            except ClientError as exc:
                if not _conditional_failure(exc):
                    raise

    def delete_counter(self, key: str) -> None:
        self._call(
            "delete_item",
            TableName=self.table,
            Key=self._key(self.options.get("key_prefix", "") + COUNTER_PREFIX + key),
        )

    # -- claims -----------------------------------------------------------------------------

    def claim(self, key: str, value: str, expires: float) -> str | None:
        """A ``PutItem`` that succeeds only if the claim is missing or lapsed; otherwise the
        holder, read back (strongly consistent) and tried again if it lapsed meanwhile."""
        item = self._key(self.options.get("key_prefix", "") + CLAIM_PREFIX + key)
        while True:
            now = time.time()
            try:
                self._call(
                    "put_item",
                    TableName=self.table,
                    Item={**item, HOLDER: {"S": value}, EXPIRES: {"N": repr(now + expires)}},
                    ConditionExpression="attribute_not_exists(#k) OR #e <= :now",
                    ExpressionAttributeNames={"#k": KEY, "#e": EXPIRES},
                    ExpressionAttributeValues={":now": {"N": repr(now)}},
                )
                return None
            except ClientError as exc:
                if not _conditional_failure(exc):
                    raise
            held = self._call("get_item", TableName=self.table, Key=item, ConsistentRead=True).get("Item")
            if held and float(held[EXPIRES]["N"]) > time.time():
                return str(held[HOLDER]["S"])

    def release(self, key: str, value: str) -> None:
        try:
            self._call(
                "delete_item",
                TableName=self.table,
                Key=self._key(self.options.get("key_prefix", "") + CLAIM_PREFIX + key),
                ConditionExpression="#h = :v",
                ExpressionAttributeNames={"#h": HOLDER},
                ExpressionAttributeValues={":v": {"S": value}},
            )
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise

    def close(self) -> None:
        self._db.close()


def _backoff(attempt: int) -> None:
    """AWS's advice for unprocessed batch items: exponential backoff with jitter."""
    time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
