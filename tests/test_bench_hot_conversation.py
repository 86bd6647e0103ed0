"""The hot conversation's stand-in (bench/hot_conversation.py): every call the stores make through a `Table` is
charged its simulated time and its keys' write units. Before it wrapped the stores' hand-made caller (decision
0104), their calls went around it and the simulated clock never moved: the bench never ended."""

from __future__ import annotations

import os
import threading
from unittest import mock

import boto3
from moto import mock_aws

from shared.stores.dynamo import Table, json_client

# The bench's modules set the handlers' environment (its table names) on import: kept to this module.
with mock.patch.dict(os.environ):
    from bench.hot_conversation import CALL_S, KEY_WRITE_UNITS_PER_S, SimulatedTime, StandInDynamoDb


def _table(time: SimulatedTime) -> tuple[Table, StandInDynamoDb]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    stand_in = StandInDynamoDb(json_client(client), time)
    table = Table(client, "t")
    table.calls = stand_in  # type: ignore[assignment]
    return table, stand_in


def _in_simulated_time(time: SimulatedTime, work: object) -> None:
    def run() -> None:
        time.arrive()
        try:
            work()  # type: ignore[operator]
        finally:
            time.leave()

    thread = threading.Thread(target=run)
    thread.start()
    time.leave()  # its turn
    thread.join(timeout=30)
    assert not thread.is_alive()


@mock_aws
def test_a_tables_calls_go_through_the_stand_in_each_taking_its_time_and_write_units() -> None:
    time = SimulatedTime()
    table, stand_in = _table(time)

    def work() -> None:
        for number in range(3):
            table.put_item(Item={"pk": "conv#acme#hot", "sk": f"{number:08d}", "text": "hi"})
        table.get_item(Key={"pk": "conv#acme#hot", "sk": "00000000"})

    _in_simulated_time(time, work)
    assert stand_in.calls == {"PutItem": 3, "GetItem": 1}
    assert stand_in.units == {"conv#acme#hot": 3}
    # Four calls of CALL_S each; the three puts to one key within its write units a second.
    assert time.now >= 4 * CALL_S
    assert time.now >= 2 / KEY_WRITE_UNITS_PER_S
