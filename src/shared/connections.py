"""Connections, room memberships and presence in DynamoDB.

One table, four item types (see docs/data-model.md):
  conn#{connectionId} / conn          the connection, with the set of room keys it is in
  room#{companyId}#{room} / {connId}  a membership, queried for fan-out
  presence#{companyId} / {userId}     the set of a user's open connections
  opened#{YYYY-MM-DDTHH} / {connId}   connections by the hour they opened, for the sweep of stale ones
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from shared.clock import iso
from shared.dynamo import query_pages
from shared.identity import Identity
from shared.rooms import Room, home_rooms

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

CONNECTION_SK = "conn"
# API Gateway closes every connection after 2 hours; one still recorded well after that missed its $disconnect.
MAX_CONNECTION_LIFE = timedelta(hours=2, minutes=10)
SWEEP_LOOKBACK_HOURS = 24


@dataclass(frozen=True)
class Connection:
    connection_id: str
    identity: Identity
    room_keys: frozenset[str]


@dataclass(frozen=True)
class Closed:
    connection: Connection
    went_offline: bool


def connection_key(connection_id: str) -> dict[str, str]:
    """The key of a connection's own item; the rate limiter keeps its state there too."""
    return {"pk": f"conn#{connection_id}", "sk": CONNECTION_SK}


def _presence_pk(company_id: str) -> str:
    return f"presence#{company_id}"


def _opened_pk(moment: datetime) -> str:
    return f"opened#{moment.astimezone(UTC).strftime('%Y-%m-%dT%H')}"


@dataclass(frozen=True)
class Opened:
    """A connection as the hourly index remembers it, even after its own record expired."""

    connection_id: str
    identity: Identity
    bucket: str


class ConnectionStore:
    def __init__(self, table: Table, ttl_seconds: int) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds

    def _expiry(self, now: datetime) -> int:
        return int(now.timestamp()) + self._ttl_seconds

    def open(self, connection_id: str, identity: Identity, now: datetime) -> bool:
        """Record a connection in its home rooms. Returns True when it is the user's first connection."""
        expires = self._expiry(now)
        rooms = home_rooms(identity.company_id, identity.user_id)
        keys = {room.key(identity.company_id) for room in rooms}
        with self._table.batch_writer() as batch:
            batch.put_item(
                Item={
                    **connection_key(connection_id),
                    "connectionId": connection_id,
                    "userId": identity.user_id,
                    "companyId": identity.company_id,
                    "email": identity.email,
                    "exp": identity.exp,
                    "connectedAt": iso(now),
                    "rooms": keys,
                    "opened": _opened_pk(now),
                    "ttl": expires,
                }
            )
            for key in keys:
                batch.put_item(Item=self._membership(key, connection_id, identity.user_id, expires))
            batch.put_item(
                Item={
                    "pk": _opened_pk(now),
                    "sk": connection_id,
                    "userId": identity.user_id,
                    "companyId": identity.company_id,
                    "ttl": int((now + timedelta(hours=SWEEP_LOOKBACK_HOURS + 2)).timestamp()),
                }
            )
        previous = self._table.update_item(
            Key={"pk": _presence_pk(identity.company_id), "sk": identity.user_id},
            UpdateExpression="ADD connections :c SET #ttl = :ttl",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":c": {connection_id}, ":ttl": expires},
            ReturnValues="UPDATED_OLD",
        )
        return "connections" not in previous.get("Attributes", {})

    def _record(self, connection_id: str) -> dict[str, Any] | None:
        return self._table.get_item(Key=connection_key(connection_id), ConsistentRead=True).get("Item")

    def get(self, connection_id: str) -> Connection | None:
        item = self._record(connection_id)
        return None if item is None else _connection(item)

    def close(self, connection_id: str, remembered: Opened | None = None) -> Closed | None:
        """Remove a connection and all its memberships. Closing twice is harmless and returns None.
        With `remembered` (from the hourly index), a connection whose record already expired still
        leaves its user's presence."""
        item = self._record(connection_id)
        if item is None and remembered is None:
            return None
        connection = (
            _connection(item) if item is not None else Connection(connection_id, remembered.identity, frozenset())  # type: ignore[union-attr]
        )
        opened = item.get("opened") if item is not None else remembered.bucket  # type: ignore[union-attr]
        with self._table.batch_writer() as batch:
            for key in connection.room_keys:
                batch.delete_item(Key={"pk": key, "sk": connection_id})
            batch.delete_item(Key=connection_key(connection_id))
            if opened:
                batch.delete_item(Key={"pk": str(opened), "sk": connection_id})
        identity = connection.identity
        previous = self._table.update_item(
            Key={"pk": _presence_pk(identity.company_id), "sk": identity.user_id},
            UpdateExpression="DELETE connections :c",
            ExpressionAttributeValues={":c": {connection_id}},
            ReturnValues="UPDATED_OLD",
        )
        before = previous.get("Attributes", {}).get("connections", set())
        return Closed(connection, went_offline=before == {connection_id})

    def stale(self, now: datetime) -> list[Opened]:
        """Connections opened in hours that ended longer than API Gateway's 2-hour limit ago, still recorded."""
        newest = now - MAX_CONNECTION_LIFE - timedelta(hours=1)
        found: list[Opened] = []
        for hours_back in range(SWEEP_LOOKBACK_HOURS):
            bucket = _opened_pk(newest - timedelta(hours=hours_back))
            for items in query_pages(self._table, KeyConditionExpression=Key("pk").eq(bucket)):
                found.extend(
                    Opened(
                        connection_id=str(item["sk"]),
                        identity=Identity(userId=item["userId"], companyId=item["companyId"]),
                        bucket=bucket,
                    )
                    for item in items
                )
        return found

    def extend(self, connection_id: str, exp: int | None) -> None:
        """Let the connection live until `exp` (None: no expiry), after auth:refresh."""
        self._table.update_item(
            Key=connection_key(connection_id),
            UpdateExpression="SET #exp = :exp",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#exp": "exp"},
            ExpressionAttributeValues={":exp": exp},
        )

    def join(self, connection_id: str, company_id: str, user_id: str, room: Room, now: datetime) -> bool:
        """Add a membership. False when the connection is already gone."""
        key = room.key(company_id)
        client = self._table.meta.client
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": connection_key(connection_id),
                            "UpdateExpression": "ADD rooms :r",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": {":r": {key}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": self._membership(key, connection_id, user_id, self._expiry(now)),
                        }
                    },
                ]
            )
        except client.exceptions.TransactionCanceledException:
            return False
        return True

    def leave(self, connection_id: str, company_id: str, room: Room) -> None:
        key = room.key(company_id)
        client = self._table.meta.client
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": connection_key(connection_id),
                        "UpdateExpression": "DELETE rooms :r",
                        "ExpressionAttributeValues": {":r": {key}},
                    }
                },
                {"Delete": {"TableName": self._table.name, "Key": {"pk": key, "sk": connection_id}}},
            ]
        )

    def members(self, company_id: str, room: Room) -> Iterator[list[str]]:
        """Connection ids in a room, one DynamoDB page at a time."""
        for items in query_pages(
            self._table,
            KeyConditionExpression=Key("pk").eq(room.key(company_id)),
            ProjectionExpression="sk",
            ConsistentRead=True,
        ):
            yield [str(item["sk"]) for item in items]

    def online_users(self, company_id: str) -> list[dict[str, Any]]:
        return [
            {"userId": item["sk"], "connections": len(item["connections"])}
            for items in query_pages(self._table, KeyConditionExpression=Key("pk").eq(_presence_pk(company_id)))
            for item in items
            if item.get("connections")
        ]

    @staticmethod
    def _membership(key: str, connection_id: str, user_id: str, expires: int) -> dict[str, Any]:
        return {"pk": key, "sk": connection_id, "userId": user_id, "ttl": expires}


def _connection(item: dict[str, Any]) -> Connection:
    identity = Identity(
        userId=item["userId"],
        companyId=item["companyId"],
        email=item.get("email"),
        exp=None if item.get("exp") is None else int(item["exp"]),
    )
    return Connection(
        connection_id=item["connectionId"],
        identity=identity,
        room_keys=frozenset(item.get("rooms", set())),
    )
