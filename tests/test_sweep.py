"""Connections whose $disconnect never arrived are swept after API Gateway's 2-hour limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from roomcast_local.testing import Peer, RecordingGateway
from shared.protocol.identity import Identity
from shared.protocol.rooms import company_room
from shared.wiring.services import Services

OPENED = datetime(2026, 11, 26, 1, 20, tzinfo=UTC)


def ghost(services: Services, connection_id: str, user: str) -> None:
    services.connections.open(connection_id, Identity(userId=user, companyId="acme"), OPENED)


def members(services: Services) -> set[str]:
    return {member.connection_id for page in services.rooms.members("acme", company_room("acme")) for member in page}


def test_a_connection_older_than_the_limit_is_swept_with_its_presence(
    services: Services, gateway: RecordingGateway
) -> None:
    watcher = Peer(gateway, "watcher", "boss", "acme").connect()
    ghost(services, "ghost", "ana")
    assert services.presence.sweep(OPENED + timedelta(hours=2)) == 0  # not yet certainly gone
    assert services.presence.sweep(OPENED + timedelta(hours=3, minutes=11)) == 1
    assert services.connections.get("ghost") is None
    assert members(services) == {"watcher"}
    assert [f["data"] for f in watcher.received("status:offline")] == [{"userId": "ana"}]
    assert services.presence.sweep(OPENED + timedelta(hours=3, minutes=30)) == 0  # its index entry went too


def test_presence_is_cleaned_even_when_the_record_already_expired(
    services: Services, gateway: RecordingGateway
) -> None:
    watcher = Peer(gateway, "watcher", "boss", "acme").connect()
    ghost(services, "ghost", "ana")
    boto3.resource("dynamodb").Table("test-connections").delete_item(Key={"pk": "conn#ghost", "sk": "conn"})
    assert services.presence.sweep(OPENED + timedelta(hours=4)) == 1
    assert {user["userId"] for user in watcher.ok("presence:list")["users"]} == {"boss"}
    assert [f["data"] for f in watcher.received("status:offline")] == [{"userId": "ana"}]


def test_live_and_properly_closed_connections_are_left_alone(services: Services, gateway: RecordingGateway) -> None:
    ghost(services, "closed", "ana")
    services.presence.disconnect("closed", datetime.now(UTC))
    Peer(gateway, "live", "ben", "acme").connect()
    assert services.presence.sweep(datetime.now(UTC)) == 0
    assert services.presence.sweep(OPENED + timedelta(hours=5)) == 0
    assert members(services) == {"live"}
