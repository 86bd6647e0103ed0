"""The local stack's DynamoDB (roomcast_local.storage): moto's answers, served over kept-alive connections, with
table queries that read only their partition (decision 0043)."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from moto.dynamodb.models.table import Table

from roomcast_local.storage import Storage, partition_query

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeDefinitionTypeDef, KeySchemaElementTypeDef


def _table(name: str, *, range_key: bool) -> Any:
    keys: list[KeySchemaElementTypeDef] = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes: list[AttributeDefinitionTypeDef] = [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "group", "AttributeType": "S"},
    ]
    if range_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    return boto3.resource("dynamodb").create_table(
        TableName=name,
        KeySchema=keys,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {"IndexName": "by-group", "KeySchema": [{"AttributeName": "group", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "ALL"}},
        ],
    )  # fmt: skip


@pytest.fixture
def rooms(aws: None) -> Any:
    table = _table("rooms", range_key=True)
    with table.batch_writer() as batch:
        # Partitions interleaved on purpose, so that a partition's items are not adjacent in the table.
        for index in range(300):
            batch.put_item(
                Item={"pk": f"room-{index % 7}", "sk": f"m#{index:04d}", "group": f"g{index % 3}", "n": index}
            )
    return table


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": Key("pk").eq("room-3")},
    {"KeyConditionExpression": Key("pk").eq("room-3"), "ScanIndexForward": False, "Limit": 1},
    {"KeyConditionExpression": Key("pk").eq("room-5") & Key("sk").begins_with("m#01")},
    {"KeyConditionExpression": Key("pk").eq("room-1") & Key("sk").between("m#0050", "m#0200"), "Limit": 4},
    {"KeyConditionExpression": Key("pk").eq("room-2"), "FilterExpression": Attr("n").gt(150)},
    {"KeyConditionExpression": Key("pk").eq("room-2"), "ProjectionExpression": "sk"},
    {"KeyConditionExpression": Key("pk").eq("no-such-room")},
    {"KeyConditionExpression": Key("group").eq("g1"), "IndexName": "by-group", "Limit": 5},
]


def _pages(table: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of a query, paged with ExclusiveStartKey as the stores do."""
    pages, start = [], None
    while True:
        page = table.query(**query, **({"ExclusiveStartKey": start} if start else {}))
        pages.append({"Items": page["Items"], "LastEvaluatedKey": page.get("LastEvaluatedKey")})
        start = page.get("LastEvaluatedKey")
        if start is None or len(pages) > 100:
            return pages


@pytest.mark.parametrize("query", QUERIES, ids=[str(sorted(query)) for query in QUERIES])
def test_a_partition_query_answers_as_moto_does(rooms: Any, query: dict[str, Any]) -> None:
    expected = _pages(rooms, query)
    with mock.patch.object(Table, "query", partition_query(Table.query)):
        assert _pages(rooms, query) == expected


@pytest.mark.usefixtures("aws")
def test_a_table_without_a_range_key_is_queried_by_its_one_item() -> None:
    table = _table("flat", range_key=False)
    for index in range(20):
        table.put_item(Item={"pk": f"k{index}", "group": "g", "n": index})
    with mock.patch.object(Table, "query", partition_query(Table.query)):
        assert table.query(KeyConditionExpression=Key("pk").eq("k7"))["Items"] == [{"pk": "k7", "group": "g", "n": 7}]
        assert table.query(KeyConditionExpression=Key("pk").eq("k70"))["Items"] == []


def test_a_table_query_reads_its_partition_and_not_the_table(rooms: Any) -> None:
    """moto's own query sorts the whole table (all_items) for every Query; ours must not touch it."""
    with (
        mock.patch.object(Table, "query", partition_query(Table.query)),
        mock.patch.object(Table, "all_items", autospec=True, side_effect=Table.all_items) as whole_table,
    ):
        rooms.query(KeyConditionExpression=Key("pk").eq("room-4"), ScanIndexForward=False, Limit=1)
        assert whole_table.call_count == 0
        rooms.query(IndexName="by-group", KeyConditionExpression=Key("group").eq("g0"))  # moto's path for indexes
        assert whole_table.call_count == 1


@pytest.fixture
def storage() -> Iterator[Storage]:
    loop = asyncio.new_event_loop()  # the one the process's pipes belong to, from start to stop
    started = loop.run_until_complete(Storage.start())
    yield started
    loop.run_until_complete(started.stop())
    loop.close()


def _call(connection: http.client.HTTPConnection, target: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{target}",
        "Authorization": "AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
    }
    connection.request("POST", "/", json.dumps(body), headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_storage_keeps_a_connection_open_across_calls(storage: Storage) -> None:
    """moto's werkzeug server closed the connection after each answer, so every DynamoDB call paid for a new one."""
    host, port = storage.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    status, _ = _call(connection, "ListTables", {})
    assert status == 200
    kept = connection.sock
    assert kept is not None, "the server closed the connection after its answer"
    status, tables = _call(connection, "ListTables", {})
    assert (status, connection.sock) == (200, kept)
    assert tables == {"TableNames": []}
    connection.close()


def test_storage_answers_boto3_as_dynamodb_does(storage: Storage) -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url=storage.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
    assert client.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}, "n": {"N": "1"}}
