"""Company analytics: counters per company per UTC day, kept as data is written (see docs/analytics.md).

company#{companyId}[#{shard}] / day#{YYYY-MM-DD}  agentMessages, contactMessages, conversationsCreated,
                                                  conversationsConverted, responseSecondsSum, responseCount: a
                                                  day's counters in ANALYTICS_SHARDS partitions, summed on read
                                                  (shard 0 is `company#{companyId}`, where they were unsharded)
push#{companyId} / push                           watchedUntil (dashboards may be open), lastPushAt, trailingDue
                                                  (a trailing push is on its way)
subscribed / {companyId}                          a company with dashboard viewers, for the minute refresh

Each counted event is added to one shard chosen at random, so no partition takes more than its share of the
company's events; the push item is read once per event and written only while someone watches (decision 0095).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from shared.stores.dynamo import get_many, query_pages, update_if

if TYPE_CHECKING:
    from shared.stores.dynamo import Table

# At most one metrics:update per company per second; the claims below enforce it.
PUSH_INTERVAL_MS = 1000
# A trailing push not made by then was lost (its invocation failed for good): another may be scheduled.
TRAILING_ABANDONED_MS = 10_000
DAY_TTL = timedelta(days=90)
SUBSCRIPTION_TTL = timedelta(hours=2, minutes=10)
REGISTRY_PK = "subscribed"
PUSH_SK = "push"
# A company's events a second at most (about 1,000), over DynamoDB's 1,000 writes a second per item, with room.
ANALYTICS_SHARDS = 16


@dataclass(frozen=True)
class Counts:
    """What one write adds to a company's day."""

    agent_messages: int = 0
    contact_messages: int = 0
    conversations_created: int = 0
    conversations_converted: int = 0
    response_seconds: float | None = None

    def update(self) -> dict[str, Decimal]:
        values = {
            "agentMessages": Decimal(self.agent_messages),
            "contactMessages": Decimal(self.contact_messages),
            "conversationsCreated": Decimal(self.conversations_created),
            "conversationsConverted": Decimal(self.conversations_converted),
        }
        if self.response_seconds is not None:
            values["responseSecondsSum"] = Decimal(str(round(self.response_seconds, 3)))
            values["responseCount"] = Decimal(1)
        return {name: value for name, value in values.items() if value}


def _day_key(day: date) -> str:
    return f"day#{day.isoformat()}"


def _counter_pk(company_id: str, shard: int) -> str:
    """Shard 0 is the company's own key: the days counted before the counters were sharded are summed too."""
    return _company_pk(company_id) if shard == 0 else f"{_company_pk(company_id)}#{shard}"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _company_pk(company_id: str) -> str:
    return f"company#{company_id}"


class AnalyticsStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def add(self, company_id: str, now: datetime, counts: Counts) -> None:
        """Add to today's counters atomically, in one of the day's shards."""
        changes = counts.update()
        names = {f"#c{i}": name for i, name in enumerate(changes)} | {"#ttl": "ttl"}
        values: dict[str, Any] = {f":c{i}": value for i, value in enumerate(changes.values())}
        values[":ttl"] = int((now + DAY_TTL).timestamp())
        additions = ", ".join(f"#c{i} :c{i}" for i in range(len(changes)))
        shard = random.randrange(ANALYTICS_SHARDS)  # noqa: S311 - spreading writes, not secrecy
        self._table.update_item(
            Key={"pk": _counter_pk(company_id, shard), "sk": _day_key(now.date())},
            UpdateExpression=f"SET #ttl = :ttl ADD {additions}" if additions else "SET #ttl = :ttl",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def days(self, company_id: str, first: date, last: date) -> list[dict[str, Any]]:
        """Every shard of the days from `first` to `last`, to be summed: at most 30 x ANALYTICS_SHARDS small
        items, whatever the traffic, in BatchGetItems of 100 (one for today). Consistent: a push right after a
        change must include it."""
        days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
        keys = [
            {"pk": _counter_pk(company_id, shard), "sk": _day_key(day)}
            for day in days
            for shard in range(ANALYTICS_SHARDS)
        ]
        return get_many(self._table, keys, consistent=True)

    def push_state(self, company_id: str) -> dict[str, Any]:
        """The company's push item (`watchedUntil`, `lastPushAt`, `trailingDue`), read eventually consistently:
        one read per counted event, half a read unit, in a partition of its own."""
        item = self._table.get_item(Key=_push_key(company_id)).get("Item")
        return dict(item or {})

    def claim_push(self, company_id: str, now: datetime) -> bool:
        """Win the right to push this second's figures: one conditional write, whichever Lambda gets there
        first. It also clears the trailing-push marker: what the winner reads next includes every change so far."""
        now_ms = _ms(now)
        return update_if(
            self._table,
            Key=_push_key(company_id),
            UpdateExpression="SET lastPushAt = :now REMOVE trailingDue",
            ConditionExpression=Attr("lastPushAt").not_exists() | Attr("lastPushAt").lte(now_ms - PUSH_INTERVAL_MS),
            ExpressionAttributeValues={":now": now_ms},
        )

    def claim_trailing(self, company_id: str, now: datetime, due_ms: int) -> bool:
        """Win the right to schedule the one trailing push of this second."""
        return update_if(
            self._table,
            Key=_push_key(company_id),
            UpdateExpression="SET trailingDue = :due",
            ConditionExpression=Attr("trailingDue").not_exists()
            | Attr("trailingDue").lt(_ms(now) - TRAILING_ABANDONED_MS),
            ExpressionAttributeValues={":due": due_ms},
        )

    def release_trailing(self, company_id: str, due_ms: int) -> None:
        update_if(
            self._table,
            Key=_push_key(company_id),
            UpdateExpression="REMOVE trailingDue",
            ConditionExpression=Attr("trailingDue").eq(due_ms),
        )

    def register_viewer(self, company_id: str, now: datetime) -> None:
        """A dashboard opened: the company is watched, by the counting writes and by the minute refresh, until
        a push finds its room empty or SUBSCRIPTION_TTL passes without another subscribe."""
        until = now + SUBSCRIPTION_TTL
        self._table.update_item(
            Key=_push_key(company_id),
            UpdateExpression="SET watchedUntil = :until, #ttl = :ttl",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":until": _ms(until), ":ttl": int((until + DAY_TTL).timestamp())},
        )
        self._table.put_item(Item={"pk": REGISTRY_PK, "sk": company_id, "ttl": int(until.timestamp())})

    def watched_companies(self) -> list[str]:
        return [
            str(item["sk"])
            for items in query_pages(self._table, KeyConditionExpression=Key("pk").eq(REGISTRY_PK))
            for item in items
        ]

    def forget_viewers(self, company_id: str, seen_until: int | None) -> None:
        """No viewer was found: stop the pushes, unless a subscribe came since `seen_until` was read (the
        `watchedUntil` a push saw before it found the room empty)."""
        if not update_if(
            self._table,
            Key=_push_key(company_id),
            UpdateExpression="REMOVE watchedUntil",
            ConditionExpression=Attr("watchedUntil").not_exists()
            if seen_until is None
            else Attr("watchedUntil").eq(seen_until),
        ):
            return
        self._table.delete_item(Key={"pk": REGISTRY_PK, "sk": company_id})


def _push_key(company_id: str) -> dict[str, str]:
    return {"pk": f"push#{company_id}", "sk": PUSH_SK}
