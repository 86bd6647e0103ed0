"""Small helpers over the boto3 DynamoDB resource."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_dynamodb.type_defs import PutTypeDef, TransactWriteItemTypeDef


def query_pages(table: Table, **query: Any) -> Iterator[list[dict[str, Any]]]:
    """Every page of a Query, following LastEvaluatedKey."""
    while True:
        page = table.query(**query)
        yield page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


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
        client.transact_write_items(TransactItems=items)
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
            client.transact_write_items(TransactItems=items)
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
