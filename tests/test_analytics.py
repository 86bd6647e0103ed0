"""/analytics: figures worked out by hand over several days, the one-per-second push, and tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roomcast_local.testing import ManualClock, Peer, QueuedDeferrer, RecordingGateway, publish, run_deferred
from shared.stores.analytics import AnalyticsStore, Counts
from shared.wiring.services import Services


@pytest.fixture(autouse=True)
def frozen(clock: ManualClock) -> None:
    """Every test here starts at noon on 26 November, and time moves only as it says."""
    clock.set(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


def at(clock: ManualClock, text: str) -> None:
    clock.set(datetime.fromisoformat(text).replace(tzinfo=UTC))


def contact_says(conversation: str, text: str, company: str = "acme") -> None:
    detail = {"companyId": company, "conversationId": conversation, "contactId": "ct-1", "content": text}
    assert publish("MessageReceived", detail) == {"status": "applied"}


@pytest.fixture
def dataset(services: Services, gateway: RecordingGateway, clock: ManualClock, deferred: QueuedDeferrer) -> Peer:
    """Messages, replies and conversions from 20 October to 26 November (see each step's comment)."""
    # What the writes hand off is left unrun: a trailing push waits for its second, on this clock.
    deferred.auto = False
    agent = Peer(gateway, "agent-1", "ana", "acme").connect()

    def say(conversation: str, text: str) -> None:
        agent.ok("message:send", {"conversationId": conversation, "content": text})

    # 20 Oct, outside every period: 1 created, 1 contact + 1 agent message, a 600 s reply.
    at(clock, "2026-10-20T10:00:00")
    old = agent.ok("conversation:create", {})["conversation"]["id"]
    contact_says(old, "hello?")
    clock.advance(600)
    say(old, "sorry for the wait")

    # 1 Nov, month only: A created; contact, reply after 120 s, a second agent message (not a reply).
    at(clock, "2026-11-01T10:00:00")
    conversation_a = agent.ok("conversation:create", {})["conversation"]["id"]
    contact_says(conversation_a, "question")
    clock.advance(120)
    say(conversation_a, "answer")
    clock.advance(60)
    say(conversation_a, "anything else?")

    # 22 Nov, week and month: B opened by the contact; two contact messages, the reply 45 s after the
    # first; another agent message; B converted.
    at(clock, "2026-11-22T09:00:00")
    contact_says("conv-b", "I want to buy")
    clock.advance(30)
    contact_says("conv-b", "the big plan")
    clock.advance(15)
    say("conv-b", "great!")
    clock.advance(240)
    say("conv-b", "sending the contract")
    at(clock, "2026-11-22T10:00:00")
    agent.ok("conversation:update", {"conversationId": "conv-b", "status": "converted"})
    agent.ok("conversation:update", {"conversationId": "conv-b", "status": "converted"})  # counts once

    # 26 Nov (today): C and D created; two exchanges in C, replies after 30 s and 90 s; A converted.
    at(clock, "2026-11-26T08:00:00")
    conversation_c = agent.ok("conversation:create", {})["conversation"]["id"]
    at(clock, "2026-11-26T08:10:00")
    contact_says(conversation_c, "hi")
    clock.advance(30)
    say(conversation_c, "hello")
    at(clock, "2026-11-26T08:20:00")
    contact_says(conversation_c, "price?")
    clock.advance(90)
    say(conversation_c, "100")
    at(clock, "2026-11-26T09:00:00")
    agent.ok("conversation:update", {"conversationId": conversation_a, "status": "converted"})
    at(clock, "2026-11-26T09:30:00")
    agent.ok("conversation:create", {})
    at(clock, "2026-11-26T12:00:00")
    return agent


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        # today: messages 2 contact + 2 agent; created C, D; converted A; replies 30, 90.
        ("today", {"totalMessages": 4, "totalConversations": 2, "averageResponseTime": 60, "conversionRate": 0.5}),
        # week (20-26 Nov): + 22 Nov's 2 + 2 messages, B created and converted, reply 45.
        ("week", {"totalMessages": 8, "totalConversations": 3, "averageResponseTime": 55, "conversionRate": 0.6667}),
        # month (28 Oct-26 Nov): + 1 Nov's 1 + 2 messages, A created, reply 120.
        ("month", {"totalMessages": 11, "totalConversations": 4, "averageResponseTime": 71.25, "conversionRate": 0.5}),
    ],
)
def test_figures_match_the_hand_worked_dataset(dataset: Peer, period: str, expected: dict[str, Any]) -> None:
    figures = dataset.ok("analytics:request", {"period": period})
    assert figures == {**expected, "period": period, "timestamp": "2026-11-26T12:00:00.000Z"}


def test_without_an_ack_the_answer_is_analytics_update(dataset: Peer) -> None:
    reply = dataset.act("analytics:request", {"period": "today"}, ack_id=None)
    assert reply["event"] == "analytics:update"
    assert reply["namespace"] == "/analytics"
    assert reply["data"]["totalMessages"] == 4


def test_a_company_with_no_data_has_zero_figures(services: Services, gateway: RecordingGateway) -> None:
    peer = Peer(gateway, "g", "gus", "globex").connect()
    figures = peer.ok("analytics:request", {"period": "month"})
    assert {
        key: figures[key] for key in ("totalMessages", "totalConversations", "averageResponseTime", "conversionRate")
    } == {
        "totalMessages": 0,
        "totalConversations": 0,
        "averageResponseTime": 0,
        "conversionRate": 0,
    }


@pytest.mark.parametrize("data", [{"period": "year"}, {"period": 7}, {"period": "today", "x": 1}])
def test_bad_periods_are_bad_requests(services: Services, gateway: RecordingGateway, data: dict[str, Any]) -> None:
    peer = Peer(gateway, "a", "ana", "acme").connect()
    assert peer.error("analytics:request", data) == "bad_request"


def test_metrics_update_is_pushed_at_most_once_per_second(
    services: Services, gateway: RecordingGateway, clock: ManualClock, deferred: QueuedDeferrer
) -> None:
    # Only the pushes the writes make themselves: the trailing push is another test's.
    deferred.auto = False
    viewer = Peer(gateway, "viewer", "boss", "acme").connect()
    assert viewer.ok("analytics:subscribe") == {"room": "analytics:acme"}
    agent = Peer(gateway, "agent", "ana", "acme").connect()
    conversation = agent.ok("conversation:create", {})["conversation"]["id"]  # pushes: 1 created
    for text in ("a", "b", "c"):
        clock.advance(0.2)
        agent.ok("message:send", {"conversationId": conversation, "content": text})
    pushes = viewer.received("metrics:update")
    assert [push["data"]["totalConversations"] for push in pushes] == [1]
    assert pushes[0]["data"]["totalMessages"] == 0

    clock.advance(0.5)  # 1.1 s after the first push
    agent.ok("message:send", {"conversationId": conversation, "content": "d"})
    pushes = viewer.received("metrics:update")
    assert len(pushes) == 2
    assert pushes[1]["data"]["totalMessages"] == 4
    assert pushes[1]["data"]["period"] == "today"


def test_two_lambdas_racing_for_the_same_second_push_once(services: Services) -> None:
    import boto3

    from shared.stores.dynamo import Table

    store = AnalyticsStore(Table(boto3.client("dynamodb"), "test-analytics"))
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    store.add("acme", now, Counts(agent_messages=1))
    assert store.claim_push("acme", now) is True
    assert store.claim_push("acme", now + timedelta(milliseconds=999)) is False
    assert store.claim_push("acme", now + timedelta(milliseconds=1000)) is True


def test_viewers_see_only_their_company(services: Services, gateway: RecordingGateway, clock: ManualClock) -> None:
    acme_viewer = Peer(gateway, "av", "boss", "acme").connect()
    globex_viewer = Peer(gateway, "gv", "boss", "globex").connect()
    acme_viewer.ok("analytics:subscribe")
    globex_viewer.ok("analytics:subscribe")
    Peer(gateway, "agent", "ana", "acme").connect().ok("conversation:create", {})
    assert len(acme_viewer.received("metrics:update")) == 1
    assert globex_viewer.received("metrics:update") == []
    assert globex_viewer.ok("analytics:request", {"period": "today"})["totalConversations"] == 0


def test_unsubscribe_stops_the_pushes(services: Services, gateway: RecordingGateway, clock: ManualClock) -> None:
    viewer = Peer(gateway, "viewer", "boss", "acme").connect()
    viewer.ok("analytics:subscribe")
    viewer.ok("analytics:unsubscribe")
    Peer(gateway, "agent", "ana", "acme").connect().ok("conversation:create", {})
    assert viewer.received("metrics:update") == []


def test_the_minute_refresh_reaches_companies_with_viewers_and_forgets_the_rest(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    from roomcast_local.testing import invoke

    viewer = Peer(gateway, "viewer", "boss", "acme").connect()
    viewer.ok("analytics:subscribe")
    leaver = Peer(gateway, "leaver", "boss", "globex").connect()
    leaver.ok("analytics:subscribe")
    leaver.disconnect()

    assert invoke("handlers.analytics.push_figures", {}) == {"companies": 1}
    (push,) = viewer.received("metrics:update")
    assert push["data"]["period"] == "today"
    assert invoke("handlers.analytics.push_figures", {}) == {"companies": 1}  # globex was forgotten
    assert len(viewer.received("metrics:update")) == 2


def test_a_change_within_a_second_of_a_push_is_pushed_once_that_second_is_over(
    services: Services,
    gateway: RecordingGateway,
    deferred: QueuedDeferrer,
    clock: ManualClock,
) -> None:
    viewer = Peer(gateway, "viewer", "boss", "acme").connect()
    viewer.ok("analytics:subscribe")
    agent = Peer(gateway, "agent", "ana", "acme").connect()
    conversation = agent.ok("conversation:create", {})["conversation"]["id"]  # pushed at once: 1 created
    deferred.auto = False
    clock.advance(0.3)
    agent.ok("message:send", {"conversationId": conversation, "content": "a"})  # within the second
    clock.advance(0.2)
    agent.ok("message:send", {"conversationId": conversation, "content": "b"})  # still within it
    assert len(viewer.received("metrics:update")) == 1
    assert [task.kind for task in deferred.tasks] == ["metrics"]  # one trailing push for both

    run_deferred()
    pushes = [push["data"] for push in viewer.received("metrics:update")]
    assert [(push["totalConversations"], push["totalMessages"]) for push in pushes] == [(1, 0), (1, 2)]
    first, trailing = (datetime.fromisoformat(push["timestamp"]) for push in pushes)
    assert trailing - first >= timedelta(seconds=1)  # at most once a second, still
