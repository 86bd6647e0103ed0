"""Sharded hot keys (issue 23, item 3): counters spread over shards and summed exactly, a company room's
memberships over partitions read at once, the hour indexes over shards the sweep reads all of; and what may
run beside each (decisions 0095, 0096)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from roomcast_local.testing import Peer, QueuedDeferrer, RecordingGateway
from shared.delivery.deferred import BroadcastChunk, GoneRecipient, RoomBroadcast
from shared.protocol.actions import Period
from shared.protocol.frames import event_frame
from shared.protocol.identity import Identity
from shared.protocol.rooms import company_room
from shared.stores.analytics import ANALYTICS_SHARDS, AnalyticsStore, Counts
from shared.stores.dynamo import Table
from shared.stores.rooms import COMPANY_ROOM_SHARDS, RoomReader, hour_index_shard, membership_pk, room_partitions
from shared.wiring.services import Services

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def analytics_items(company: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table("test-analytics")
    pks = [f"company#{company}", *(f"company#{company}#{shard}" for shard in range(1, ANALYTICS_SHARDS))]
    return [item for pk in pks for item in table.query(KeyConditionExpression=Key("pk").eq(pk))["Items"]]


def stored_members(room_key: str) -> set[str]:
    table = boto3.resource("dynamodb").Table("test-connections")
    return {
        str(item["sk"])
        for pk in room_partitions(room_key)
        for item in table.query(KeyConditionExpression=Key("pk").eq(pk), ConsistentRead=True)["Items"]
    }


def ids_in_distinct_shards(count: int, shards: int, prefix: str) -> list[str]:
    """Connection ids, one per shard, for the first `count` shards."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < count:
        candidate = f"{prefix}-{index}"
        found.setdefault(hour_index_shard(candidate, shards), candidate)
        index += 1
    return [found[shard] for shard in sorted(found)][:count]


# ---- analytics counters: shards written at once, summed exactly ----


def test_two_shards_updated_at_once_sum_exactly(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AnalyticsStore(Table(boto3.client("dynamodb"), "test-analytics"))
    both_ready = threading.Barrier(2)
    shard_of_thread = {"a": 0, "b": 1}

    def shard(_: int) -> int:
        name = threading.current_thread().name
        both_ready.wait()  # each writer holds its shard until the other has chosen its own: the writes overlap
        return shard_of_thread[name[0]]

    monkeypatch.setattr("shared.stores.analytics.random.randrange", shard)

    def writer(counts: Counts) -> None:
        for _ in range(5):
            store.add("acme", NOW, counts)

    a = threading.Thread(target=writer, args=(Counts(agent_messages=1, response_seconds=0.1),), name="a-writer")
    b = threading.Thread(target=writer, args=(Counts(contact_messages=1, response_seconds=0.2),), name="b-writer")
    for thread in (a, b):
        thread.start()
    for thread in (a, b):
        thread.join()

    assert sorted(str(item["pk"]) for item in analytics_items("acme")) == ["company#acme", "company#acme#1"]
    by_shard = {str(item["pk"]): item for item in analytics_items("acme")}
    assert (by_shard["company#acme"]["agentMessages"], by_shard["company#acme#1"]["contactMessages"]) == (5, 5)
    figures = services.analytics.report("acme", Period.TODAY, NOW)
    assert figures.total_messages == 10
    # 5 x 0.1 + 5 x 0.2 over 10 responses, exact in decimal: 0.15, not 0.15000000000000002.
    assert figures.average_response_time == 0.15


def test_a_report_read_while_counts_are_written_sees_a_total_between_before_and_after(services: Services) -> None:
    store = AnalyticsStore(Table(boto3.client("dynamodb"), "test-analytics"))
    for _ in range(10):
        store.add("acme", NOW, Counts(agent_messages=1))
    done = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not done.is_set():
            seen.append(services.analytics.report("acme", Period.TODAY, NOW).total_messages)

    thread = threading.Thread(target=reader)
    thread.start()
    # One writer: two writes at once to one shard are DynamoDB's atomic ADD, which moto does not reproduce.
    for _ in range(40):
        store.add("acme", NOW, Counts(agent_messages=1))
    done.set()
    thread.join()
    assert seen
    # Each shard is read consistently after every write it had taken: no read loses a count it saw before.
    assert all(10 <= total <= 50 for total in seen)
    assert seen == sorted(seen)
    assert services.analytics.report("acme", Period.TODAY, NOW).total_messages == 50


def test_the_days_before_sharding_are_still_summed(services: Services) -> None:
    table = boto3.resource("dynamodb").Table("test-analytics")
    # A day counted before the counters were sharded: on the company's own key, with its push state.
    table.put_item(Item={"pk": "company#acme", "sk": "day#2026-11-25", "agentMessages": 3, "lastPushAt": 1})
    store = AnalyticsStore(Table(boto3.client("dynamodb"), "test-analytics"))
    for _ in range(4):
        store.add("acme", NOW, Counts(agent_messages=1))
    assert services.analytics.report("acme", Period.WEEK, NOW).total_messages == 7


def test_nobody_watching_means_no_push_and_no_claim(services: Services, gateway: RecordingGateway) -> None:
    agent = Peer(gateway, "agent", "ana", "acme").connect()
    conversation = agent.ok("conversation:create", {})["conversation"]["id"]
    agent.ok("message:send", {"conversationId": conversation, "content": "hi"})
    table = boto3.resource("dynamodb").Table("test-analytics")
    assert "Item" not in table.get_item(Key={"pk": "push#acme", "sk": "push"})  # no claim was written

    viewer = Peer(gateway, "viewer", "boss", "acme").connect()
    viewer.ok("analytics:subscribe")
    agent.ok("message:send", {"conversationId": conversation, "content": "again"})
    (push,) = viewer.received("metrics:update")
    assert push["data"]["totalMessages"] == 2


def test_a_push_finding_the_room_empty_stops_the_pushes_but_not_a_newer_subscribe(
    services: Services, gateway: RecordingGateway
) -> None:
    viewer = Peer(gateway, "viewer", "boss", "acme").connect()
    viewer.ok("analytics:subscribe")
    state = AnalyticsStore(Table(boto3.client("dynamodb"), "test-analytics")).push_state("acme")
    viewer.ok("analytics:subscribe")  # again, after `state` was read: a newer watch
    store = AnalyticsStore(Table(boto3.client("dynamodb"), "test-analytics"))
    store.forget_viewers("acme", int(state["watchedUntil"]) - 1)  # what a push that read an older state does
    assert "watchedUntil" in store.push_state("acme")
    assert store.watched_companies() == ["acme"]
    store.forget_viewers("acme", int(store.push_state("acme")["watchedUntil"]))
    assert "watchedUntil" not in store.push_state("acme")
    assert store.watched_companies() == []


# ---- company room memberships: partitions read at once ----


def test_a_company_rooms_members_are_spread_over_its_partitions_and_read_whole(
    services: Services, gateway: RecordingGateway
) -> None:
    peers = [Peer(gateway, f"c-{index}", f"u-{index}", "acme").connect() for index in range(40)]
    table = boto3.resource("dynamodb").Table("test-connections")
    used = {
        pk
        for pk in room_partitions(company_room("acme").key("acme"))
        if table.query(KeyConditionExpression=Key("pk").eq(pk))["Items"]
    }
    assert len(used) > COMPANY_ROOM_SHARDS // 2
    members = {m.connection_id for page in services.rooms.members("acme", company_room("acme")) for m in page}
    assert members == {peer.connection_id for peer in peers}
    # A page size caps what one round of reads returns over all partitions, as it capped one partition's page.
    first = next(iter(services.rooms.members("acme", company_room("acme"), page_size=16)))
    assert 0 < len(first) <= 16


def test_a_membership_written_while_the_split_reads_the_partitions_is_read_once_or_not_at_all(
    services: Services, gateway: RecordingGateway, deferred: QueuedDeferrer, monkeypatch: pytest.MonkeyPatch
) -> None:
    deferred.auto = False
    for index in range(30):
        Peer(gateway, f"c-{index}", f"u-{index}", "acme").connect()
    deferred.take()
    before = stored_members(company_room("acme").key("acme"))
    read = RoomReader._member_page
    joined = threading.Event()

    def page_then_join(store: RoomReader, pk: str, start: Any, limit: Any) -> dict[str, Any]:
        page = read(store, pk, start, limit)
        if not joined.is_set():
            joined.set()  # a connect lands while the other partitions are being read
            services.connections.open("late", Identity(userId="u-late", companyId="acme"), NOW)
        return page

    monkeypatch.setattr(RoomReader, "_member_page", page_then_join)
    room = company_room("acme")
    services.large_rooms.split(
        RoomBroadcast(companyId="acme", room=room.name, frame=event_frame("campaign:started", {}))
    )
    handed = [r.connection_id for task in deferred.take() if isinstance(task, BroadcastChunk) for r in task.recipients]
    assert joined.is_set()
    assert len(handed) == len(set(handed))  # nobody twice
    assert before <= set(handed) <= before | {"late"}  # everyone there before; the late one at most once


def test_a_410_removes_a_sharded_membership_its_record_no_longer_lists(
    services: Services, gateway: RecordingGateway
) -> None:
    Peer(gateway, "watcher", "boss", "acme").connect()
    Peer(gateway, "gone", "ana", "acme").connect()
    room_key = company_room("acme").key("acme")
    table = boto3.resource("dynamodb").Table("test-connections")
    # The record forgot the room (a leave racing the post), the membership stayed in its partition.
    table.update_item(
        Key={"pk": "conn#gone", "sk": "conn"},
        UpdateExpression="DELETE rooms :r",
        ExpressionAttributeValues={":r": {room_key}},
    )
    assert "gone" in stored_members(room_key)
    later = datetime.now(UTC) + timedelta(minutes=5)  # past the grace a connect still running has
    found = GoneRecipient(connectionId="gone", roomKey=room_key, foundAt=later)
    assert services.presence.forget_gone([found], later) == 1
    assert stored_members(room_key) == {"watcher"}
    assert table.get_item(Key={"pk": membership_pk(room_key, "gone"), "sk": "gone"}).get("Item") is None


def test_a_close_removes_every_membership_in_every_partition(services: Services, gateway: RecordingGateway) -> None:
    ids = ids_in_distinct_shards(4, COMPANY_ROOM_SHARDS, "conn")
    for index, connection_id in enumerate(ids):
        Peer(gateway, connection_id, f"u-{index}", "acme").connect()
    room_key = company_room("acme").key("acme")
    assert len({membership_pk(room_key, connection_id) for connection_id in ids}) == 4
    for connection_id in ids[:3]:
        services.presence.disconnect(connection_id, NOW)
    assert stored_members(room_key) == {ids[3]}


# ---- the hour indexes: the sweep reads every shard ----


def test_the_sweep_reads_every_shard_of_each_hour(services: Services) -> None:
    old_hour = datetime(2026, 11, 26, 1, 20, tzinfo=UTC)
    shards = services.connections.hour_index_shards
    ghosts = ids_in_distinct_shards(shards, shards, "ghost")
    for index, connection_id in enumerate(ghosts):
        services.connections.open(connection_id, Identity(userId=f"u-{index}", companyId="acme"), old_hour)
    table = boto3.resource("dynamodb").Table("test-connections")
    hour = old_hour.strftime("%Y-%m-%dT%H")
    assert all(
        table.query(KeyConditionExpression=Key("pk").eq(f"opened#{hour}#{shard}"))["Count"] == 1
        for shard in range(shards)
    )
    assert services.presence.sweep(old_hour + timedelta(hours=3, minutes=11)) == shards
    assert all(services.connections.get(connection_id) is None for connection_id in ghosts)
    assert stored_members(company_room("acme").key("acme")) == set()
    assert services.presence.sweep(old_hour + timedelta(hours=3, minutes=30)) == 0  # every index entry went
