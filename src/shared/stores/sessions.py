"""Sessions in the recovery table (decision 0065):

  session#{pid} / session   sid, namespace, userId, companyId, createdAt, connectionId, attachedAt, floor,
                            generation, disconnectedAt?, ended?, ttl

A session is held by one connection at a time (`connectionId`); a reconnection takes it over with a write
conditional on the `generation` it read, so of two reconnections with one pid only one wins. Whatever a
connection does to its session later (its close, its end) is conditional on still holding it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.protocol.clock import iso
from shared.protocol.recovery import SessionState
from shared.stores.dynamo import update_if

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

SESSION_SK = "session"


def _key(pid: str) -> dict[str, str]:
    return {"pk": f"session#{pid}", "sk": SESSION_SK}


def _state(item: dict[str, Any]) -> SessionState:
    disconnected = item.get("disconnectedAt")
    return SessionState(
        pid=str(item["pk"]).removeprefix("session#"),
        sid=str(item["sid"]),
        namespace=str(item["namespace"]),
        user_id=str(item["userId"]),
        company_id=str(item["companyId"]),
        created_at=datetime.fromisoformat(str(item["createdAt"])),
        connection_id=str(item["connectionId"]),
        attached_at=datetime.fromisoformat(str(item["attachedAt"])),
        floor=int(str(item["floor"])),
        generation=int(str(item["generation"])),
        disconnected_at=None if disconnected is None else datetime.fromisoformat(str(disconnected)),
        ended=bool(item.get("ended", False)),
    )


class SessionStore:
    def __init__(self, table: Table, retention: timedelta) -> None:
        self._table = table
        self._retention = retention

    def get(self, pid: str) -> SessionState | None:
        item = self._table.get_item(Key=_key(pid), ConsistentRead=True).get("Item")
        return None if item is None else _state(item)

    def create(self, session: SessionState) -> bool:
        """A new session; False in the (2^-128) case that its pid exists."""
        item = {
            **_key(session.pid),
            "sid": session.sid,
            "namespace": session.namespace,
            "userId": session.user_id,
            "companyId": session.company_id,
            "createdAt": iso(session.created_at),
            "connectionId": session.connection_id,
            "attachedAt": iso(session.attached_at),
            "floor": session.floor,
            "generation": session.generation,
            "ttl": self._ttl(session.attached_at),
        }
        return update_if(
            self._table,
            Key=_key(session.pid),
            UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in item if name not in ("pk", "sk")),
            ConditionExpression="attribute_not_exists(pk)",
            ExpressionAttributeNames={f"#{name}": name for name in item if name not in ("pk", "sk")},
            ExpressionAttributeValues={f":{name}": value for name, value in item.items() if name not in ("pk", "sk")},
        )

    def take_over(self, session: SessionState, connection_id: str, floor: int, now: datetime) -> bool:
        """Move the session to `connection_id`, unless it changed since it was read (another reconnection
        took it, or it ended): False then, and the caller starts a new session."""
        return update_if(
            self._table,
            Key=_key(session.pid),
            UpdateExpression=(
                "SET connectionId = :c, attachedAt = :at, floor = :floor, generation = :next, #ttl = :ttl "
                "REMOVE disconnectedAt"
            ),
            ConditionExpression="generation = :seen AND attribute_not_exists(ended)",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={
                ":c": connection_id,
                ":at": iso(now),
                ":floor": floor,
                ":next": session.generation + 1,
                ":seen": session.generation,
                ":ttl": self._ttl(now),
            },
        )

    def disconnected(self, pid: str, connection_id: str, now: datetime) -> bool:
        """The connection holding the session closed without ending it: the window starts now. Nothing when
        another connection holds it already (a $disconnect that came after the reconnection's $connect)."""
        return update_if(
            self._table,
            Key=_key(pid),
            UpdateExpression="SET disconnectedAt = :at, #ttl = :ttl",
            ConditionExpression="connectionId = :c",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":at": iso(now), ":c": connection_id, ":ttl": self._ttl(now)},
        )

    def end(self, pid: str, connection_id: str | None = None) -> bool:
        """The session is over and never recovers; with `connection_id`, only if that connection holds it."""
        update: dict[str, Any] = {
            "Key": _key(pid),
            "UpdateExpression": "SET ended = :yes",
            "ExpressionAttributeValues": {":yes": True},
            "ConditionExpression": "attribute_exists(pk)",
        }
        if connection_id is not None:
            update["ConditionExpression"] = "connectionId = :c"
            update["ExpressionAttributeValues"][":c"] = connection_id
        return update_if(self._table, **update)

    def _ttl(self, moment: datetime) -> int:
        return int((moment + self._retention).timestamp())
