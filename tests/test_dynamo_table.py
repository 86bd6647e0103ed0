"""`shared.stores.dynamo.Table` (decision 0076) against boto3's Table resource: the same call sends DynamoDB the same
request and gives back the same answer, for every operation and kind of parameter the stores use; errors reach the
caller as DynamoDB sent them; batches and transactions carry Python values."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from shared.stores.dynamo import Table, put_all
from tests.conftest import TABLE_NAMES

NAME = TABLE_NAMES["ConversationsTable"]
TWIN = "test-twin"


class Sent:
    """The JSON body of every DynamoDB request a session's clients send, as signed."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.bodies: list[tuple[str, Any]] = []
        session.events.register("before-sign.dynamodb", self._record)

    def _record(self, request: Any, operation_name: str, **_: Any) -> None:
        self.bodies.append((operation_name, json.loads(request.body or b"{}")))


@pytest.fixture
def tables(aws: None) -> tuple[Any, Table, Sent]:
    """boto3's resource on one table and a Table on a twin of it (same keys), through one session."""
    session = boto3.session.Session()
    sent = Sent(session)  # before the clients are made: they copy the session's handlers
    client = session.client("dynamodb")
    client.create_table(
        TableName=TWIN,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    resource = session.resource("dynamodb").Table(NAME)
    sent.bodies.clear()
    return resource, Table(client, TWIN), sent


ITEM: dict[str, Any] = {
    "pk": "conv#acme#c-1",
    "sk": "msg#000000000001",
    "content": "hé",
    "seq": 1,
    "ratio": Decimal("0.25"),
    "flag": True,
    "none": None,
    "tags": {"a", "b"},
    "nested": {"list": [1, "two", {"three": False}]},
    "blob": b"\x00\x01",
}
KEY = {"pk": ITEM["pk"], "sk": ITEM["sk"]}

CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("put, object condition", lambda t: t.put_item(Item=ITEM, ConditionExpression=Attr("pk").not_exists())),
    ("get, consistent", lambda t: t.get_item(Key=KEY, ConsistentRead=True)),
    ("get, missing", lambda t: t.get_item(Key={"pk": "none", "sk": "none"})),
    (
        "update, names, values and a condition object",
        lambda t: t.update_item(
            Key=KEY,
            UpdateExpression="SET #c = :c, seq = seq + :one REMOVE #gone",
            ConditionExpression=Attr("seq").eq(1) & Attr("flag").exists(),
            ExpressionAttributeNames={"#c": "content", "#gone": "none"},
            ExpressionAttributeValues={":c": "edited", ":one": 1},
            ReturnValues="ALL_NEW",
        ),
    ),
    (
        "update, string condition",
        lambda t: t.update_item(
            Key=KEY,
            UpdateExpression="REMOVE #f",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#f": "flag"},
            ReturnValues="UPDATED_OLD",
        ),
    ),
    (
        "query, key condition, filter and projection",
        lambda t: t.query(
            KeyConditionExpression=Key("pk").eq(ITEM["pk"]) & Key("sk").begins_with("msg#"),
            FilterExpression=Attr("seq").gte(1),
            ScanIndexForward=False,
            Limit=5,
            ConsistentRead=True,
        ),
    ),
    (
        "query, a page after a key",
        lambda t: t.query(
            KeyConditionExpression=Key("pk").eq(ITEM["pk"]),
            ExclusiveStartKey={"pk": ITEM["pk"], "sk": "msg#000000000000"},
            ProjectionExpression="sk",
        ),
    ),
    ("delete, returning the item", lambda t: t.delete_item(Key=KEY, ReturnValues="ALL_OLD")),
]


def _without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer less what names the request or the table (the two tables' names differ)."""
    return {name: value for name, value in answer.items() if name not in ("ResponseMetadata", "ConsumedCapacity")}


def test_each_call_sends_what_the_resource_sends_and_answers_alike(tables: tuple[Any, Table, Sent]) -> None:
    resource, table, sent = tables
    runs = []
    for target in (resource, table):
        sent.bodies.clear()
        answers = [_without_metadata(call(target)) for _, call in CALLS]
        bodies = [(operation, {**body, "TableName": "t"}) for operation, body in sent.bodies]
        runs.append((bodies, answers))
    (their_bodies, their_answers), (our_bodies, our_answers) = runs
    assert len(our_bodies) == len(CALLS)
    for index, (label, _) in enumerate(CALLS):
        assert our_bodies[index] == their_bodies[index], label
        assert our_answers[index] == their_answers[index], label
    assert our_answers[1]["Item"] == ITEM | {"seq": Decimal(1)}  # read back as boto3 reads: numbers as Decimal


def test_an_error_reaches_the_caller_as_dynamodb_sent_it(tables: tuple[Any, Table, Sent]) -> None:
    resource, table, _ = tables
    resource.put_item(Item=ITEM)
    table.put_item(Item=ITEM)
    errors: list[dict[str, Any]] = []
    for target in (resource, table):
        with pytest.raises(ClientError) as raised:
            target.put_item(
                Item=ITEM, ConditionExpression=Attr("pk").not_exists(), ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )
        errors.append(dict(raised.value.response))
    assert errors[0]["Error"]["Code"] == errors[1]["Error"]["Code"] == "ConditionalCheckFailedException"
    # Not deserialised, by either: stores compare it with DynamoDB's own form.
    assert errors[0]["Item"] == errors[1]["Item"]
    assert errors[1]["Item"]["content"] == {"S": "hé"}


def test_a_batch_writes_and_deletes_through_boto3s_batch_writer(tables: tuple[Any, Table, Sent]) -> None:
    _, table, _ = tables
    items: list[dict[str, Any]] = [{"pk": "room", "sk": f"m{index:03d}", "n": index} for index in range(60)]
    with table.batch_writer() as batch:
        for item in items:
            batch.put_item(Item=item)
    assert table.query(KeyConditionExpression=Key("pk").eq("room"))["Items"] == [
        {**item, "n": Decimal(item["n"])} for item in items
    ]
    with table.batch_writer() as batch:
        for item in items[:59]:
            batch.delete_item(Key={"pk": "room", "sk": item["sk"]})
    assert [found["sk"] for found in table.query(KeyConditionExpression=Key("pk").eq("room"))["Items"]] == ["m059"]


def test_a_transaction_writes_python_values_and_reports_each_items_reason(tables: tuple[Any, Table, Sent]) -> None:
    _, table, _ = tables
    marker = {"pk": "conv#acme#c-1", "sk": "#client#k", "messageId": "m-1"}
    assert put_all(table, [(marker, "attribute_not_exists(pk)"), (ITEM, None)]) is None
    assert table.get_item(Key=KEY)["Item"] == table.get_item(Key=KEY, ConsistentRead=True)["Item"]
    assert table.get_item(Key=KEY)["Item"]["nested"] == {"list": [1, "two", {"three": False}]}
    assert put_all(table, [(marker, "attribute_not_exists(pk)"), (ITEM, None)]) == ["ConditionalCheckFailed", "None"]
    conditioned: Any = {"Put": {"TableName": TWIN, "Item": ITEM, "ConditionExpression": Attr("pk").exists()}}
    with pytest.raises(TypeError):
        table.transact_write_items([conditioned])
