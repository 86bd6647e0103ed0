"""Small helpers over the boto3 DynamoDB resource."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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
