"""$connect and $disconnect: records, home rooms, presence, and clean-up of connections found gone."""

from __future__ import annotations

from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

from roomcast_local.testing import ManualClock, Peer, RecordingGateway
from shared.stores.rooms import room_partitions
from shared.wiring.services import Services
from tests.conftest import settle


def items(table: str, pk: str) -> list[dict[str, Any]]:
    """The items under `pk`; for a room, in every partition its memberships are spread over."""
    found = boto3.resource("dynamodb").Table(table)
    return [
        dict(item)
        for part in room_partitions(pk)
        for item in found.query(KeyConditionExpression=Key("pk").eq(part))["Items"]
    ]


def test_connect_records_the_connection_in_its_home_rooms(services: Services, gateway: RecordingGateway) -> None:
    Peer(gateway, "c1", "u-1", "acme").connect()
    assert [item["sk"] for item in items("test-connections", "room#acme#company:acme")] == ["c1"]
    assert [item["sk"] for item in items("test-connections", "room#acme#user:u-1")] == ["c1"]
    (record,) = items("test-connections", "conn#c1")
    assert record["userId"] == "u-1"
    assert record["companyId"] == "acme"
    assert int(str(record["ttl"])) > 0


def test_the_first_connection_of_a_user_is_announced_to_the_company_only(
    services: Services, gateway: RecordingGateway
) -> None:
    colleague = Peer(gateway, "c-colleague", "u-2", "acme").connect()
    stranger = Peer(gateway, "c-stranger", "u-9", "globex").connect()
    first = Peer(gateway, "c1", "u-1", "acme").connect()

    assert [f["data"] for f in colleague.received("status:online")] == [{"userId": "u-1"}]
    assert colleague.received("status:online")[0]["namespace"] == "/conversations"
    assert stranger.received() == []
    # The new connection cannot be posted to during $connect, and is not.
    assert first.received() == []


def test_presence_changes_only_with_a_users_first_and_last_connection(
    services: Services, gateway: RecordingGateway
) -> None:
    watcher = Peer(gateway, "w", "u-watch", "acme").connect()
    laptop = Peer(gateway, "laptop", "u-1", "acme").connect()
    phone = Peer(gateway, "phone", "u-1", "acme").connect()
    assert len(watcher.received("status:online")) == 1

    laptop.disconnect()
    assert watcher.received("status:offline") == []
    phone.disconnect()
    assert [f["data"] for f in watcher.received("status:offline")] == [{"userId": "u-1"}]


def test_disconnect_removes_every_membership_and_is_idempotent(services: Services, gateway: RecordingGateway) -> None:
    watcher = Peer(gateway, "w", "u-watch", "acme").connect()
    peer = Peer(gateway, "c1", "u-1", "acme").connect()
    conversation = peer.ok("conversation:create", {"subject": "hello"})["conversation"]["id"]

    peer.disconnect()
    peer.disconnect()

    # What is left is a tombstone that expires within the hour: it refuses a $connect that comes late.
    (tombstone,) = items("test-connections", "conn#c1")
    assert "closedAt" in tombstone
    assert services.connections.get("c1") is None
    assert items("test-connections", "room#acme#user:u-1") == []
    assert items("test-connections", f"room#acme#conversation:{conversation}") == []
    assert [item["sk"] for item in items("test-connections", "room#acme#company:acme")] == ["w"]
    assert len(watcher.received("status:offline")) == 1


def test_presence_list_shows_the_companys_online_users(services: Services, gateway: RecordingGateway) -> None:
    Peer(gateway, "a1", "u-1", "acme").connect()
    Peer(gateway, "a2", "u-1", "acme").connect()
    Peer(gateway, "g1", "u-9", "globex").connect()
    viewer = Peer(gateway, "a3", "u-2", "acme").connect()

    users = viewer.ok("presence:list")["users"]
    assert sorted(users, key=lambda user: user["userId"]) == [
        {"userId": "u-1", "connections": 2},
        {"userId": "u-2", "connections": 1},
    ]
    reply = viewer.act("presence:list", ack_id=None)
    assert reply["event"] == "presence:list"
    assert len(reply["data"]["users"]) == 2


def test_a_gone_connection_is_removed_with_its_memberships_and_presence(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    watcher = Peer(gateway, "w", "u-watch", "acme").connect()
    ghost = Peer(gateway, "ghost", "u-ghost", "acme").connect()
    gateway.gone.add(ghost.connection_id)
    settle(clock)

    Peer(gateway, "late", "u-late", "acme").connect()  # its status:online finds the ghost gone

    assert [item.get("closedAt") is not None for item in items("test-connections", "conn#ghost")] == [True]
    assert [item["sk"] for item in items("test-connections", "room#acme#company:acme")] == sorted(["w", "late"])
    assert [f["data"] for f in watcher.received("status:offline")] == [{"userId": "u-ghost"}]
    users = {user["userId"] for user in watcher.ok("presence:list")["users"]}
    assert users == {"u-watch", "u-late"}


def test_one_failing_recipient_does_not_stop_the_others(services: Services, gateway: RecordingGateway) -> None:
    broken = Peer(gateway, "broken", "u-b", "acme").connect()
    healthy = Peer(gateway, "healthy", "u-h", "acme").connect()
    gateway.failing.add(broken.connection_id)

    Peer(gateway, "new", "u-n", "acme").connect()

    assert [f["data"] for f in healthy.received("status:online")] == [{"userId": "u-n"}]
    # A failure other than 410 is not proof the peer is gone: its records stay.
    assert items("test-connections", "conn#broken") != []
