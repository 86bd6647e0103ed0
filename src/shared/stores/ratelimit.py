"""Per-connection rate limiting shared by every Lambda container: GCRA on the connection's item.

The generic cell rate algorithm keeps one number, the theoretical arrival time `rateTat` (ms). An
action is admitted when, after adding one interval, `rateTat` is at most `burst` intervals ahead of
now: a token bucket of `burst` tokens refilled at `per_second`, without a read-modify-write race.
An idle connection is admitted in one conditional UpdateItem; a busy one in two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from shared.stores.connections import connection_key
from shared.stores.dynamo import conditional_check_failed

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

_DESERIALIZE = TypeDeserializer()


@dataclass(frozen=True)
class Admission:
    """The rate limit's answer, and the connection's record as its update read it back: the record carries
    the token expiry (which auth:refresh extends) and the opened Socket.IO namespaces, so no action pays a
    separate GetItem to check them."""

    allowed: bool
    strikes: int
    exp: int | None
    """The connection's token expiry as last extended (auth:refresh), or as connected."""
    namespaces: frozenset[str] = frozenset()
    """The Socket.IO namespaces the connection has opened."""


@dataclass(frozen=True)
class Gcra:
    """The schedule itself, on plain numbers: `per_second` actions a second, `burst` at once."""

    interval_ms: float
    tolerance_ms: float

    @classmethod
    def of(cls, per_second: float, burst: int) -> Gcra:
        interval = 1000.0 / per_second
        return cls(interval, burst * interval)

    def restarted(self, now_ms: int) -> int:
        """The arrival time an idle connection's action leaves: the schedule starts again from now."""
        return int(now_ms + self.interval_ms)

    def latest(self, now_ms: int) -> float:
        """The latest arrival time that still admits one more action now (which adds one interval to it)."""
        return now_ms + self.tolerance_ms - self.interval_ms


def _admission(allowed: bool, strikes: int, item: dict[str, Any] | None) -> Admission:
    value = (item or {}).get("exp")
    exp = None if value is None else int(str(value))
    return Admission(allowed, strikes, exp, frozenset((item or {}).get("namespaces", set())))


class RateLimiter:
    """The schedule kept in the connection's item by conditional updates, so concurrent actions never both
    take the last place."""

    def __init__(self, table: Table, per_second: float, burst: int) -> None:
        self._table = table
        self._gcra = Gcra.of(per_second, burst)

    def admit(self, connection_id: str, now: datetime) -> Admission:
        now_ms = int(now.timestamp() * 1000)
        latest = self._gcra.latest(now_ms)
        try:
            # Idle: the schedule restarts from now.
            result = self._table.update_item(
                Key=connection_key(connection_id),
                UpdateExpression="SET rateTat = :next REMOVE rateStrikes",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(rateTat) OR rateTat < :now)",
                ExpressionAttributeValues={":next": self._gcra.restarted(now_ms), ":now": now_ms},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return _admission(True, 0, result["Attributes"])
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            raw: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            current = {name: _DESERIALIZE.deserialize(value) for name, value in raw.items()} if raw else None
        if current is None:
            # No record (closing, or swept): nothing to count against; the action itself will find out.
            return _admission(True, 0, None)
        if float(current.get("rateTat", 0)) <= latest:
            try:
                result = self._table.update_item(
                    Key=connection_key(connection_id),
                    UpdateExpression="SET rateTat = rateTat + :interval REMOVE rateStrikes",
                    ConditionExpression="rateTat <= :latest",
                    ExpressionAttributeValues={":interval": int(self._gcra.interval_ms), ":latest": int(latest)},
                    ReturnValues="ALL_NEW",
                )
                return _admission(True, 0, result["Attributes"])
            except ClientError as error:
                if not conditional_check_failed(error):
                    raise
        try:
            counted = self._table.update_item(
                Key=connection_key(connection_id),
                UpdateExpression="ADD rateStrikes :one",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":one": 1},
                ReturnValues="UPDATED_NEW",
            )["Attributes"]
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            counted = {}
        return _admission(False, int(str(counted.get("rateStrikes", 0))), current)
