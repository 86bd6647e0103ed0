"""The capacity bench's counter (bench/capacity.py): DynamoDB units per partition key per simulated second,
from the low-level calls the real stores make against moto."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
from bench.capacity import PartitionCounter

from shared.protocol.identity import Identity
from shared.protocol.rooms import company_room
from shared.stores.budget import PostBudget
from shared.stores.connections import ConnectionStore
from shared.stores.dynamo import Table
from shared.stores.rooms import RoomReader, hour_index_shard, membership_pk, room_partitions
from tests.conftest import TABLE_NAMES

NOW = datetime(2026, 11, 26, 3, 44, 21, tzinfo=UTC)


class SimulatedClock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> float:
        return self.seconds


def test_writes_and_reads_are_counted_by_partition_key_and_simulated_second(aws: None) -> None:
    clock = SimulatedClock()
    session = boto3.session.Session()
    counter = PartitionCounter(clock.now).watch(session.events)
    table = Table(session.client("dynamodb"), TABLE_NAMES["ConnectionsTable"])
    budget = PostBudget(table, 10)
    for _ in range(3):
        budget.take(4, NOW)  # the third is refused (conditional), and its retry asks for what is left
    clock.seconds = 1.5
    budget.take(4, NOW)
    key = f"{TABLE_NAMES['ConnectionsTable']}/postbudget#{int(NOW.timestamp())}"
    assert counter.units["write"][(key, 0)] == 4
    assert counter.units["write"][(key, 1)] == 1
    assert counter.busiest("write") is not None
    assert counter.busiest("write").key == key  # type: ignore[union-attr]

    store = ConnectionStore(table, 60, 10)
    for user in ("ana", "ben"):
        store.open(f"{user}-1", Identity(userId=user, companyId="acme"), NOW)
    pages = list(RoomReader(table, 1000).members("acme", company_room("acme")))
    assert sorted(member.connection_id for page in pages for member in page) == ["ana-1", "ben-1"]
    # A company room's memberships are in partitions of their own (decision 0096), each read once.
    room_key = company_room("acme").key("acme")
    table_name = TABLE_NAMES["ConnectionsTable"]
    partitions = [f"{table_name}/{pk}" for pk in room_partitions(room_key)]
    assert all(counter.units["read"][(partition, 1)] == 1 for partition in partitions)
    written = {
        f"{TABLE_NAMES['ConnectionsTable']}/{membership_pk(company_room('acme').key('acme'), c)}"
        for c in ("ana-1", "ben-1")
    }
    assert sum(counter.units["write"][(partition, 1)] for partition in written) == 2
    shard = hour_index_shard("ana-1", 16)
    assert counter.per_key("write")[f"{TABLE_NAMES['ConnectionsTable']}/opened#2026-11-26T03#{shard}"] >= 1
    assert counter.calls["Query"] == len(partitions)
