"""Company analytics: what the dashboard figures mean, and when `metrics:update` is pushed (docs/analytics.md)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.delivery.deferred import Deferrer, MetricsDue
from shared.delivery.hub import Hub
from shared.observability import logger
from shared.protocol.actions import Period
from shared.protocol.clock import iso
from shared.protocol.outbound import Figures, server_event
from shared.protocol.rooms import analytics_room
from shared.stores.analytics import PUSH_INTERVAL_MS, TRAILING_ABANDONED_MS, AnalyticsStore, Counts

PERIOD_DAYS = {Period.TODAY: 1, Period.WEEK: 7, Period.MONTH: 30}


def period_days(period: Period, today: date) -> tuple[date, date]:
    """The UTC days a period covers, today included: today, the last 7, the last 30."""
    return today - timedelta(days=PERIOD_DAYS[period] - 1), today


def watched(push_state: dict[str, Any], now: datetime) -> bool:
    """Whether a company's push item says dashboards may be open: subscribed to, and not found empty since."""
    until = push_state.get("watchedUntil")
    return until is not None and int(until) > int(now.timestamp() * 1000)


def _number(item: dict[str, Any], name: str) -> Decimal:
    return Decimal(str(item.get(name, 0)))


def figures(days: list[dict[str, Any]], period: Period, now: datetime) -> Figures:
    """The figures of docs/analytics.md from day items (every shard of every day: their sum, exact in decimal).
    The conversion rate is capped at 1: conversations created before the period can convert within it."""
    total = {
        name: float(sum((_number(day, name) for day in days), Decimal(0)))
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
    return Figures(
        period=str(period),
        totalMessages=int(total["agentMessages"] + total["contactMessages"]),
        totalConversations=int(created),
        averageResponseTime=round(total["responseSecondsSum"] / responses, 3) if responses else 0,
        conversionRate=round(min(1.0, total["conversationsConverted"] / created), 4) if created else 0,
        timestamp=iso(now),
    )


class Analytics:
    """Counting, answering requests, and pushing `metrics:update` when figures change, at most once per
    second per company: a change within a second of a push is carried by one trailing push after it."""

    def __init__(self, store: AnalyticsStore, hub: Hub, deferrer: Deferrer) -> None:
        self._store = store
        self._hub = hub
        self._deferrer = deferrer

    def count(self, company_id: str, now: datetime, counts: Counts) -> None:
        """Add to the counters; push them if someone watches. The push state is read after the counter is
        written: a push it may lead to, or one that claimed its second meanwhile, reads the counters after it."""
        self._store.add(company_id, now, counts)
        state = self._store.push_state(company_id)
        if not watched(state, now):
            return  # no dashboard open: nothing to push, nothing to claim
        now_ms = int(now.timestamp() * 1000)
        last_push = state.get("lastPushAt")
        if last_push is None or now_ms - int(last_push) >= PUSH_INTERVAL_MS:
            if self._store.claim_push(company_id, now):
                self._push_today(company_id, now, state)
                return
            last_push = now_ms  # another writer pushes this very moment, perhaps without this change
        pending = state.get("trailingDue")
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
            self._store.release_trailing(company_id, due_ms)

    def push_trailing(self, company_id: str, now: datetime) -> bool:
        """The trailing push, with the figures as they are now. False when a push within the last second
        stands in the way: try again a second later."""
        state = self._store.push_state(company_id)
        if not self._store.claim_push(company_id, now):
            return False
        self._push_today(company_id, now, state)
        return True

    def report(self, company_id: str, period: Period, now: datetime) -> Figures:
        first, last = period_days(period, now.date())
        return figures(self._store.days(company_id, first, last), period, now)

    def subscribe(self, company_id: str, now: datetime) -> None:
        self._store.register_viewer(company_id, now)

    def refresh_all(self, now: datetime) -> int:
        """The minute refresh: push today's figures to every company with viewers; forget those without."""
        pushed = 0
        for company_id in self._store.watched_companies():
            if self._push_today(company_id, now, self._store.push_state(company_id)):
                pushed += 1
        return pushed

    def _push_today(self, company_id: str, now: datetime, state: dict[str, Any]) -> bool:
        """Push today's figures (every shard, read now); a room found empty stops the pushes, unless a
        subscribe came after `state` was read. False when nobody was there."""
        frame = server_event(
            "metrics:update", figures(self._store.days(company_id, now.date(), now.date()), Period.TODAY, now)
        )
        report = self._hub.emit(company_id, analytics_room(company_id), frame)
        if report.recipients == 0 and not report.handed_off:
            seen = state.get("watchedUntil")
            self._store.forget_viewers(company_id, None if seen is None else int(seen))
            return False
        return True
