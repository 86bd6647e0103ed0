"""The DynamoDB table every store is given (`Table`), and small helpers over it.

`Table` is the part of boto3's Table resource the stores use (`get_item`, `put_item`, `update_item`,
`delete_item`, `query`, `batch_writer`, `name`, `meta.client`), with the same arguments and answers: items and
values as Python values, conditions as `boto3.dynamodb.conditions` objects or strings, error responses as
DynamoDB sent them. It calls a low-level botocore client with boto3's own serializer, deserializer and
condition builder, applied to the parameters each operation has rather than found by walking the service
model: the resource layer's per-call cost (a deep copy of the parameters, two walks of the model's shapes,
one condition builder shared by every call) goes, and calls at once through one `Table` no longer share a
builder (decision 0076). Stores obtain tables with `Table(client, name)`; clients come from
`shared.wiring.services`, one per set of calls that run at once (decision 0047).
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import ConditionBase, ConditionExpressionBuilder
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from shared.stores.dynamo_client import JsonClient

if TYPE_CHECKING:
    from boto3.dynamodb.table import BatchWriter
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import PutTypeDef, TransactWriteItemTypeDef

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
# The parameters of the operations a Table makes that hold a map of attribute values, in and out.
_MAPS_IN = ("Key", "Item", "ExclusiveStartKey")
_MAPS_OUT = ("Item", "Attributes", "LastEvaluatedKey")
# Condition parameters, and whether each is a key condition, in the order boto3 builds them (its placeholders
# are numbered in that order: the same call gets the same expressions).
_CONDITIONS = {"ConditionExpression": False, "FilterExpression": False, "KeyConditionExpression": True}
_TRANSACT_KINDS = ("Put", "Update", "Delete", "ConditionCheck")
NAMES, VALUES = "ExpressionAttributeNames", "ExpressionAttributeValues"


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    """A map of Python values as DynamoDB attribute values, as boto3 writes them."""
    return {name: _SERIALIZER.serialize(value) for name, value in item.items()}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    """A map of DynamoDB attribute values as Python values, as boto3 reads them (numbers as Decimal)."""
    return {name: _DESERIALIZER.deserialize(value) for name, value in item.items()}


def request(params: dict[str, Any], builder: ConditionExpressionBuilder | None = None) -> dict[str, Any]:
    """A Table call's parameters as the low-level client takes them: maps and values serialized, condition
    objects built into expressions whose placeholders join the call's own names and values."""
    built: dict[str, Any] = {}
    names = dict(params[NAMES]) if NAMES in params else None
    values = dict(params[VALUES]) if VALUES in params else None
    for name, value in params.items():
        if name in _MAPS_IN:
            built[name] = serialize(value)
        elif name not in (NAMES, VALUES):
            built[name] = value
    for name, is_key_condition in _CONDITIONS.items():
        condition = params.get(name)
        if isinstance(condition, ConditionBase):
            builder = builder or ConditionExpressionBuilder()
            expression = builder.build_expression(condition, is_key_condition=is_key_condition)
            built[name] = expression.condition_expression
            if expression.attribute_name_placeholders:
                names = {**(names or {}), **expression.attribute_name_placeholders}
            if expression.attribute_value_placeholders:
                values = {**(values or {}), **expression.attribute_value_placeholders}
    if names is not None:
        built[NAMES] = names
    if values is not None:
        built[VALUES] = serialize(values)
    return built


def response(answer: dict[str, Any]) -> dict[str, Any]:
    """A low-level answer as a Table gives it: its items and keys as Python values."""
    for name in _MAPS_OUT:
        if name in answer:
            answer[name] = deserialize(answer[name])
    if "Items" in answer:
        answer["Items"] = [deserialize(item) for item in answer["Items"]]
    return answer


@dataclass(frozen=True)
class _Meta:
    client: DynamoDBClient


_JSON_CLIENTS: weakref.WeakKeyDictionary[Any, JsonClient] = weakref.WeakKeyDictionary()
_JSON_CLIENTS_LOCK = threading.Lock()


def json_client(client: DynamoDBClient) -> JsonClient:
    """The hand-made caller of `client` (decision 0104), one per client: every Table over one client shares its
    connection pool, as the client's own calls would."""
    with _JSON_CLIENTS_LOCK:
        caller = _JSON_CLIENTS.get(client)
        if caller is None:
            caller = _JSON_CLIENTS[client] = JsonClient(client)
        return caller


class _BatchClient:
    """What boto3's BatchWriter calls, over the low-level client: it buffers Python items and resends the
    unprocessed ones it is given back, so both directions are converted here."""

    def __init__(self, client: JsonClient) -> None:
        self._client = client

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:  # noqa: N803
        writes: Any = _batch(RequestItems, serialize)
        answer = self._client.call("BatchWriteItem", {"RequestItems": writes})
        answer["UnprocessedItems"] = _batch(answer.get("UnprocessedItems", {}), deserialize)
        return answer


def _batch(requests: dict[str, list[dict[str, Any]]], convert: Any) -> dict[str, list[dict[str, Any]]]:
    converted: dict[str, list[dict[str, Any]]] = {}
    for table, writes in requests.items():
        converted[table] = [
            {"PutRequest": {"Item": convert(write["PutRequest"]["Item"])}}
            if "PutRequest" in write
            else {"DeleteRequest": {"Key": convert(write["DeleteRequest"]["Key"])}}
            for write in writes
        ]
    return converted


class Table:
    """One DynamoDB table through a low-level client, with the interface of boto3's Table resource."""

    def __init__(self, client: DynamoDBClient, name: str) -> None:
        self.name = name
        self.meta = _Meta(client)
        self.calls = json_client(client)

    def get_item(self, **params: Any) -> dict[str, Any]:
        return response(self.calls.call("GetItem", request({"TableName": self.name, **params})))

    def put_item(self, **params: Any) -> dict[str, Any]:
        return response(self.calls.call("PutItem", request({"TableName": self.name, **params})))

    def update_item(self, **params: Any) -> dict[str, Any]:
        return response(self.calls.call("UpdateItem", request({"TableName": self.name, **params})))

    def delete_item(self, **params: Any) -> dict[str, Any]:
        return response(self.calls.call("DeleteItem", request({"TableName": self.name, **params})))

    def query(self, **params: Any) -> dict[str, Any]:
        return response(self.calls.call("Query", request({"TableName": self.name, **params})))

    def batch_writer(self, overwrite_by_pkeys: list[str] | None = None) -> BatchWriter:
        from boto3.dynamodb.table import BatchWriter  # only some writes batch: not loaded by every cold start

        client: Any = _BatchClient(self.calls)  # BatchWriter calls only its batch_write_item
        return BatchWriter(self.name, client, overwrite_by_pkeys=overwrite_by_pkeys)

    def transact_write_items(self, items: list[TransactWriteItemTypeDef]) -> None:
        """Write `items` (Python values; conditions as strings) in one transaction. A cancellation raises the
        client's TransactionCanceledException, its reasons as DynamoDB sent them."""
        self.calls.call("TransactWriteItems", {"TransactItems": [_transact_item(item) for item in items]})


def _transact_item(item: Any) -> Any:
    converted: dict[str, Any] = {}
    for kind, action in item.items():
        if kind not in _TRANSACT_KINDS:
            raise ValueError(f"not a transaction item: {kind}")
        if any(isinstance(action.get(name), ConditionBase) for name in _CONDITIONS):
            raise TypeError("conditions in a transaction are written as strings")
        converted[kind] = request(action)
    return converted


def query_pages(table: Table, **query: Any) -> Iterator[list[dict[str, Any]]]:
    """Every page of a Query, following LastEvaluatedKey."""
    while True:
        page = table.query(**query)
        yield page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# DynamoDB's most keys in one BatchGetItem.
BATCH_GET_KEYS = 100


def get_many(table: Table, keys: list[dict[str, Any]], *, consistent: bool) -> list[dict[str, Any]]:
    """The items at `keys` that exist (in no order), BATCH_GET_KEYS to a BatchGetItem, again for any key
    DynamoDB left unprocessed."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_KEYS):
        pending: list[Any] = [serialize(key) for key in keys[start : start + BATCH_GET_KEYS]]
        attempt = 0
        while pending:
            request: Any = {table.name: {"Keys": pending, "ConsistentRead": consistent}}
            answer = table.calls.call("BatchGetItem", {"RequestItems": request})
            found.extend(deserialize(item) for item in answer.get("Responses", {}).get(table.name, []))
            pending = list(answer.get("UnprocessedKeys", {}).get(table.name, {}).get("Keys", []))
            if pending:
                attempt += 1
                conflict_pause(attempt)
    return found


def conditional_check_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def update_if(table: Table, **update: Any) -> bool:
    """An UpdateItem under its ConditionExpression: False, not an error, when the condition does not hold."""
    try:
        table.update_item(**update)
    except ClientError as error:
        if conditional_check_failed(error):
            return False
        raise
    return True


TRANSACTION_CONFLICT = "TransactionConflict"
CONFLICT_ATTEMPTS = 5
CONDITION_FAILED = "ConditionalCheckFailed"


def put_all(table: Table, puts: list[tuple[dict[str, Any], str | None]]) -> list[str] | None:
    """Put every item, each under its condition, in one transaction. None when all were written; else the
    cancellation reason of each put in order (`ConditionalCheckFailed`, `TransactionConflict`, `None`...)."""
    client = table.meta.client
    items: list[TransactWriteItemTypeDef] = []
    for item, condition in puts:
        put: PutTypeDef = {"TableName": table.name, "Item": item}
        if condition is not None:
            put["ConditionExpression"] = condition
        items.append({"Put": put})
    try:
        table.transact_write_items(items)
    except client.exceptions.TransactionCanceledException as error:
        reasons = error.response.get("CancellationReasons", [])
        codes = [str(reason.get("Code", "None")) for reason in reasons]
        if len(codes) != len(puts):
            raise
        return codes
    return None


def transact(table: Table, items: list[TransactWriteItemTypeDef]) -> list[dict[str, Any]] | None:
    """Write `items` in one transaction, again after a pause while another transaction holds one of them.
    None when written; else the cancellation reasons, one per item (a lasting conflict among them)."""
    client = table.meta.client
    attempt = 0
    while True:
        try:
            table.transact_write_items(items)
        except client.exceptions.TransactionCanceledException as error:
            reasons: list[dict[str, Any]] = error.response.get("CancellationReasons", [])  # type: ignore[assignment]
            attempt += 1
            if all(reason.get("Code") != TRANSACTION_CONFLICT for reason in reasons) or attempt == CONFLICT_ATTEMPTS:
                return reasons
            conflict_pause(attempt)
        else:
            return None


def put_once(table: Table, marker: dict[str, Any], item: dict[str, Any]) -> bool:
    """Put `item` together with `marker`, in one transaction, unless the marker exists already.
    False means a previous call with the same marker stored its item: a retry, not a second write."""
    attempt = 0
    while (codes := put_all(table, [(marker, "attribute_not_exists(pk)"), (item, None)])) is not None:
        if codes[0] == CONDITION_FAILED:
            return False
        attempt += 1
        if TRANSACTION_CONFLICT not in codes or attempt == CONFLICT_ATTEMPTS:
            raise TransactionCancelled(codes)
        conflict_pause(attempt)
    return True


class TransactionCancelled(Exception):
    """A transaction kept failing for reasons other than its conditions."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(f"transaction cancelled: {codes}")
        self.codes = codes


def conflict_pause(attempt: int) -> None:
    """Another transaction held an item: wait a little, longer each time, jittered so rivals part."""
    time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 5)))  # noqa: S311 - jitter, not secrecy
