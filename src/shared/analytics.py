"""Company analytics: counters per company per UTC day, kept as data is written (see docs/analytics.md).

company#{companyId} / day#{YYYY-MM-DD}   agentMessages, contactMessages, conversationsCreated,
                                         conversationsConverted, responseSecondsSum, responseCount, lastPushAt,
                                         trailingDue (a trailing push is on its way)
subscribed / {companyId}                 a company with dashboard viewers, for the minute refresh
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from shared.clock import iso
from shared.deferred import Deferrer, MetricsDue
from shared.dynamo import query_pages, update_if
from shared.events import ANALYTICS
from shared.fanout import Hub
from shared.observability import logger
from shared.protocol import event_frame
from shared.rooms import analytics_room

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

PUSH_INTERVAL_MS = 1000
# A trailing push not made by then was lost (its invocation failed for good): another may be scheduled.
TRAILING_ABANDONED_MS = 10_000
DAY_TTL = timedelta(days=90)
SUBSCRIPTION_TTL = timedelta(hours=2, minutes=10)
REGISTRY_PK = "subscribed"


class Period(StrEnum):
    TODAY = "today"
    WEEK = "week"
    MONTH = "month"


PERIOD_DAYS = {Period.TODAY: 1, Period.WEEK: 7, Period.MONTH: 30}


def period_days(period: Period, today: date) -> tuple[date, date]:
    """The UTC days a period covers, today included: today, the last 7, the last 30."""
    return today - timedelta(days=PERIOD_DAYS[period] - 1), today


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


def _number(item: dict[str, Any], name: str) -> float:
    return float(item.get(name, 0))


def figures(days: list[dict[str, Any]], period: Period, now: datetime) -> dict[str, Any]:
    """The SPEC's figures from day items. The conversion rate is capped at 1: conversations created
    before the period can convert within it."""
    total = {
        name: sum(_number(day, name) for day in days)
        for name in (
            "agentMessages",
            "contactMessages",
            "conversationsCreated",
            "conversationsConverted",
            "responseSecondsSum",
            "responseCount",
        )
    }
    created = total["conversationsCreated"]
    responses = total["responseCount"]
    return {
        "period": str(period),
        "totalMessages": int(total["agentMessages"] + total["contactMessages"]),
        "totalConversations": int(created),
        "averageResponseTime": round(total["responseSecondsSum"] / responses, 3) if responses else 0,
        "conversionRate": round(min(1.0, total["conversationsConverted"] / created), 4) if created else 0,
        "timestamp": iso(now),
    }


def _day_key(day: date) -> str:
    return f"day#{day.isoformat()}"


def _company_pk(company_id: str) -> str:
    return f"company#{company_id}"


class AnalyticsStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def add(self, company_id: str, now: datetime, counts: Counts) -> dict[str, Any]:
        """Add to today's counters atomically; returns the day's item as it now is."""
        changes = counts.update()
        names = {f"#c{i}": name for i, name in enumerate(changes)} | {"#ttl": "ttl"}
        values: dict[str, Any] = {f":c{i}": value for i, value in enumerate(changes.values())}
        values[":ttl"] = int((now + DAY_TTL).timestamp())
        additions = ", ".join(f"#c{i} :c{i}" for i in range(len(changes)))
        result = self._table.update_item(
            Key={"pk": _company_pk(company_id), "sk": _day_key(now.date())},
            UpdateExpression=f"SET #ttl = :ttl ADD {additions}" if additions else "SET #ttl = :ttl",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return dict(result["Attributes"])

    def days(self, company_id: str, first: date, last: date) -> list[dict[str, Any]]:
        """One Query over at most 30 small items, whatever the traffic. Consistent: a push right after a
        change must include it."""
        return [
            item
            for items in query_pages(
                self._table,
                KeyConditionExpression=Key("pk").eq(_company_pk(company_id))
                & Key("sk").between(_day_key(first), _day_key(last)),
                ConsistentRead=True,
            )
            for item in items
        ]

    def claim_push(self, company_id: str, now: datetime) -> bool:
        """Win the right to push this second's figures: one conditional write, whichever Lambda gets there
        first. It also clears the trailing-push marker: what the winner reads next includes every change so far."""
        now_ms = int(now.timestamp() * 1000)
        return update_if(
            self._table,
            Key={"pk": _company_pk(company_id), "sk": _day_key(now.date())},
            UpdateExpression="SET lastPushAt = :now REMOVE trailingDue",
            ConditionExpression=Attr("lastPushAt").not_exists() | Attr("lastPushAt").lte(now_ms - PUSH_INTERVAL_MS),
            ExpressionAttributeValues={":now": now_ms},
        )

    def claim_trailing(self, company_id: str, now: datetime, due_ms: int) -> bool:
        """Win the right to schedule the one trailing push of this second."""
        return update_if(
            self._table,
            Key={"pk": _company_pk(company_id), "sk": _day_key(now.date())},
            UpdateExpression="SET trailingDue = :due",
            ConditionExpression=Attr("trailingDue").not_exists()
            | Attr("trailingDue").lt(int(now.timestamp() * 1000) - TRAILING_ABANDONED_MS),
            ExpressionAttributeValues={":due": due_ms},
        )

    def release_trailing(self, company_id: str, now: datetime, due_ms: int) -> None:
        update_if(
            self._table,
            Key={"pk": _company_pk(company_id), "sk": _day_key(now.date())},
            UpdateExpression="REMOVE trailingDue",
            ConditionExpression=Attr("trailingDue").eq(due_ms),
        )

    def register_viewer(self, company_id: str, now: datetime) -> None:
        self._table.put_item(
            Item={"pk": REGISTRY_PK, "sk": company_id, "ttl": int((now + SUBSCRIPTION_TTL).timestamp())}
        )

    def watched_companies(self) -> list[str]:
        return [
            str(item["sk"])
            for items in query_pages(self._table, KeyConditionExpression=Key("pk").eq(REGISTRY_PK))
            for item in items
        ]

    def forget_viewers(self, company_id: str) -> None:
        self._table.delete_item(Key={"pk": REGISTRY_PK, "sk": company_id})


class Analytics:
    """Counting, answering requests, and pushing `metrics:update` when figures change, at most once per
    second per company: a change within a second of a push is carried by one trailing push after it."""

    def __init__(self, store: AnalyticsStore, hub: Hub, deferrer: Deferrer) -> None:
        self._store = store
        self._hub = hub
        self._deferrer = deferrer

    def count(self, company_id: str, now: datetime, counts: Counts) -> None:
        today = self._store.add(company_id, now, counts)
        now_ms = int(now.timestamp() * 1000)
        last_push = today.get("lastPushAt")
        if last_push is None or now_ms - int(last_push) >= PUSH_INTERVAL_MS:
            if self._store.claim_push(company_id, now):
                self._push(company_id, [today], now)
                return
            last_push = now_ms  # another writer pushes this very moment, perhaps without this change
        pending = today.get("trailingDue")
        if pending is not None and int(pending) >= now_ms - TRAILING_ABANDONED_MS:
            return  # a trailing push is on its way, and reads the figures when it is made
        due_ms = int(last_push) + PUSH_INTERVAL_MS
        if not self._store.claim_trailing(company_id, now, due_ms):
            return
        try:
            self._deferrer.defer(MetricsDue(companyId=company_id, dueMs=due_ms))
        except Exception:
            # The change is stored whatever becomes of its push: free the claim for the next change to retry.
            logger.exception("could not hand off the trailing metrics push")
            self._store.release_trailing(company_id, now, due_ms)

    def push_trailing(self, company_id: str, now: datetime) -> bool:
        """The trailing push, with the figures as they are now. False when a push within the last second
        stands in the way: try again a second later."""
        if not self._store.claim_push(company_id, now):
            return False
        self._push(company_id, self._store.days(company_id, now.date(), now.date()), now)
        return True

    def report(self, company_id: str, period: Period, now: datetime) -> dict[str, Any]:
        first, last = period_days(period, now.date())
        return figures(self._store.days(company_id, first, last), period, now)

    def subscribe(self, company_id: str, now: datetime) -> None:
        self._store.register_viewer(company_id, now)

    def refresh_all(self, now: datetime) -> int:
        """The minute refresh: push today's figures to every company with viewers; forget those without."""
        pushed = 0
        for company_id in self._store.watched_companies():
            report = self._push(company_id, self._store.days(company_id, now.date(), now.date()), now)
            if report.recipients == 0:
                self._store.forget_viewers(company_id)
            else:
                pushed += 1
        return pushed

    def _push(self, company_id: str, today: list[dict[str, Any]], now: datetime) -> Any:
        frame = event_frame("metrics:update", figures(today, Period.TODAY, now), ANALYTICS)
        return self._hub.emit(company_id, analytics_room(company_id), frame)
