"""Small helpers over the boto3 DynamoDB resource."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


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


def put_once(table: Table, marker: dict[str, Any], item: dict[str, Any]) -> bool:
    """Put `item` together with `marker`, in one transaction, unless the marker exists already.
    False means a previous call with the same marker stored its item: a retry, not a second write."""
    client = table.meta.client
    try:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table.name, "Item": marker, "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": table.name, "Item": item}},
            ]
        )
    except client.exceptions.TransactionCanceledException as error:
        reasons = error.response.get("CancellationReasons", [])
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            return False
        raise
    return True
