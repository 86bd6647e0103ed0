"""Server-side publishing: each detail-type's effect, its refusals, tenancy, and redelivery with no second effect."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from roomcast_local.testing import Peer, RecordingGateway, publish
from shared.protocol.publishing import Emit, Notify
from shared.protocol.records import Conversation
from shared.wiring.services import Services
from tests.faults import FaultInjector


@pytest.fixture
def acme(services: Services, gateway: RecordingGateway) -> dict[str, Any]:
    services.conversations.create(Conversation(id="c-1", companyId="acme", createdAt="t", updatedAt="t"))
    services.conversations.create(Conversation(id="g-1", companyId="globex", createdAt="t", updatedAt="t"))
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ana.ok("join:conversation", {"conversationId": "c-1"})
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    gus = Peer(gateway, "gus-1", "gus", "globex").connect()
    gus.ok("join:conversation", {"conversationId": "g-1"})
    gateway.clear()
    return {"ana": ana, "ben": ben, "gus": gus}


def everything(gateway: RecordingGateway) -> list[dict[str, Any]]:
    return [frame for frames in gateway.frames.values() for frame in frames]


@pytest.mark.parametrize(
    ("room", "namespace", "receivers"),
    [
        ("company:acme", "/conversations", {"ana-1", "ben-1"}),
        ("user:ben", "/notifications", {"ben-1"}),
        ("conversation:c-1", "/conversations", {"ana-1"}),
    ],
)
def test_emit_reaches_the_room(
    acme: dict[str, Any], gateway: RecordingGateway, room: str, namespace: str, receivers: set[str]
) -> None:
    detail = {"companyId": "acme", "room": room, "event": "deal:won", "data": {"amount": 1200}}
    assert publish("Emit", detail) == {"status": "applied"}
    assert {cid for cid, frames in gateway.frames.items() if frames} == receivers
    for receiver in receivers:
        assert gateway.frames[receiver] == [{"event": "deal:won", "namespace": namespace, "data": {"amount": 1200}}]


@pytest.mark.parametrize(
    "detail",
    [
        {"companyId": "acme", "room": "company:globex", "event": "deal:won"},
        {"companyId": "acme", "room": "analytics:globex", "event": "metrics:update"},
        {"companyId": "acme", "room": "conversation:g-1", "event": "deal:won"},
        {"companyId": "acme", "room": "conversation:missing", "event": "deal:won"},
        {"companyId": "acme", "room": "lobby:main", "event": "deal:won"},
        {"companyId": "acme", "room": "company:", "event": "deal:won"},
        {"companyId": "acme", "room": "company:acme", "event": "ack"},
        {"companyId": "acme", "room": "company:acme", "event": "Deal Won"},
        {"companyId": "acme", "room": "company:acme", "event": "deal:won", "data": "text"},
        {"companyId": "acme", "room": "company:acme", "event": "deal:won", "data": {"pad": "x" * 140_000}},
        {"companyId": "acme", "room": "company:acme", "event": "deal:won", "extra": 1},
        {"room": "company:acme", "event": "deal:won"},
    ],
)
def test_emit_refuses_rooms_outside_the_company_and_malformed_details(
    acme: dict[str, Any], gateway: RecordingGateway, detail: dict[str, Any]
) -> None:
    assert publish("Emit", detail) == {"status": "dropped"}
    assert everything(gateway) == []


def test_notify_stores_then_pushes_to_the_user(acme: dict[str, Any], gateway: RecordingGateway) -> None:
    detail = {"companyId": "acme", "userId": "ben", "type": "task", "title": "Call back", "data": {"taskId": "t"}}
    assert publish("Notify", detail) == {"status": "applied"}
    (pushed,) = gateway.frames["ben-1"]
    assert pushed["event"] == "notification:new"
    listed = acme["ben"].ok("notification:list")
    assert [n["id"] for n in listed["notifications"]] == [pushed["data"]["notification"]["id"]]
    assert listed["unreadCount"] == 1
    assert gateway.frames["ana-1"] == []


def test_lead_assigned_becomes_a_notification_for_the_assignee(acme: dict[str, Any], gateway: RecordingGateway) -> None:
    detail = {"companyId": "acme", "leadId": "lead-9", "assigneeUserId": "ben", "conversationId": "c-1"}
    assert publish("LeadAssigned", detail) == {"status": "applied"}
    (pushed,) = gateway.frames["ben-1"]
    notification = pushed["data"]["notification"]
    assert notification["type"] == "lead:assigned"
    assert notification["data"] == {"leadId": "lead-9", "conversationId": "c-1"}


def test_message_received_is_stored_and_broadcast_as_a_contact_message(
    acme: dict[str, Any], gateway: RecordingGateway
) -> None:
    detail = {
        "companyId": "acme",
        "conversationId": "c-1",
        "contactId": "ct-1",
        "content": "hello?",
        "externalId": "w1",
    }
    assert publish("MessageReceived", detail) == {"status": "applied"}
    (new,) = gateway.frames["ana-1"]
    assert new["event"] == "message:new"
    assert new["data"]["senderType"] == "contact"
    assert new["data"]["contactId"] == "ct-1"
    assert "fromUserId" not in new["data"]
    history = acme["ana"].ok("conversation:history", {"conversationId": "c-1"})["messages"]
    assert [m["id"] for m in history] == [new["data"]["id"]]


def test_message_received_for_a_new_conversation_opens_it_in_that_company(
    acme: dict[str, Any], gateway: RecordingGateway
) -> None:
    detail = {"companyId": "acme", "conversationId": "wa-555", "contactId": "ct-2", "content": "first contact"}
    assert publish("MessageReceived", detail) == {"status": "applied"}
    (announced,) = [f for f in gateway.frames["ben-1"] if f["event"] == "conversation:updated"]
    assert announced["data"]["conversation"]["id"] == "wa-555"
    assert announced["data"]["conversation"]["contactId"] == "ct-2"
    assert gateway.frames["gus-1"] == []
    assert acme["gus"].error("conversation:history", {"conversationId": "wa-555"}) == "not_found"


def test_the_same_external_message_is_stored_once(acme: dict[str, Any], gateway: RecordingGateway) -> None:
    detail = {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "content": "hi", "externalId": "w9"}
    publish("MessageReceived", detail)
    publish("MessageReceived", detail)  # a second event, same WhatsApp message
    assert len(gateway.frames["ana-1"]) == 1
    assert len(acme["ana"].ok("conversation:history", {"conversationId": "c-1"})["messages"]) == 1


def test_campaign_started_goes_to_the_company(acme: dict[str, Any], gateway: RecordingGateway) -> None:
    assert publish("CampaignStarted", {"companyId": "acme", "campaignId": "k-1", "name": "Spring"}) == {
        "status": "applied"
    }
    expected = {
        "event": "campaign:started",
        "namespace": "/conversations",
        "data": {"campaignId": "k-1", "name": "Spring"},
    }
    assert gateway.frames["ana-1"] == [expected]
    assert gateway.frames["ben-1"] == [expected]
    assert gateway.frames["gus-1"] == []


def test_contact_tagged_goes_to_the_conversation_of_that_company_only(
    acme: dict[str, Any], gateway: RecordingGateway
) -> None:
    tagged = {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "tag": "vip"}
    assert publish("ContactTagged", tagged) == {"status": "applied"}
    assert gateway.frames["ana-1"] == [
        {
            "event": "contact:tagged",
            "namespace": "/conversations",
            "data": {"conversationId": "c-1", "contactId": "ct-1", "tag": "vip"},
        }
    ]
    gateway.clear()
    assert publish("ContactTagged", {**tagged, "conversationId": "g-1"}) == {"status": "dropped"}
    assert everything(gateway) == []


DETAILS: dict[str, dict[str, Any]] = {
    "Emit": {"companyId": "acme", "room": "company:acme", "event": "deal:won", "data": {}},
    "Notify": {"companyId": "acme", "userId": "ben", "type": "task", "title": "Call back"},
    "MessageReceived": {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "content": "hi"},
    "CampaignStarted": {"companyId": "acme", "campaignId": "k-1", "name": "Spring"},
    "ContactTagged": {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "tag": "vip"},
    "LeadAssigned": {"companyId": "acme", "leadId": "l-1", "assigneeUserId": "ben"},
}


@pytest.mark.parametrize("detail_type", sorted(DETAILS))
def test_a_redelivered_event_has_no_second_effect(
    acme: dict[str, Any], gateway: RecordingGateway, services: Services, detail_type: str
) -> None:
    assert publish(detail_type, DETAILS[detail_type], event_id="evt-1") == {"status": "applied"}
    first = everything(gateway)
    assert first
    assert publish(detail_type, DETAILS[detail_type], event_id="evt-1") == {"status": "applied"}
    assert everything(gateway) == first
    assert len(acme["ben"].ok("notification:list")["notifications"]) == (detail_type in {"Notify", "LeadAssigned"})
    assert len(acme["ana"].ok("conversation:history", {"conversationId": "c-1"})["messages"]) == (
        detail_type == "MessageReceived"
    )


@pytest.mark.parametrize("detail_type", sorted(DETAILS))
def test_a_retry_after_a_failure_midway_applies_once(
    acme: dict[str, Any],
    gateway: RecordingGateway,
    services: Services,
    detail_type: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first delivery dies after storing; EventBridge retries; the store is not written twice."""
    real_emit = services.hub.emit
    calls = {"n": 0}

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("network blip")
        return real_emit(*args, **kwargs)

    monkeypatch.setattr(services.hub, "emit", failing_once)
    with pytest.raises(ConnectionError):
        publish(detail_type, DETAILS[detail_type], event_id="evt-2")
    assert publish(detail_type, DETAILS[detail_type], event_id="evt-2") == {"status": "applied"}
    assert len(acme["ben"].ok("notification:list")["notifications"]) == (detail_type in {"Notify", "LeadAssigned"})
    assert len(acme["ana"].ok("conversation:history", {"conversationId": "c-1"})["messages"]) == (
        detail_type == "MessageReceived"
    )


@pytest.mark.parametrize(
    ("detail_type", "detail"),
    [
        ("Notify", {"companyId": "acme", "userId": "ben", "type": "task"}),
        ("Notify", {"companyId": "acme", "userId": "ben", "type": "task", "title": ""}),
        ("Notify", {"companyId": "acme", "userId": "bad id", "type": "task", "title": "t"}),
        ("MessageReceived", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct", "content": ""}),
        ("MessageReceived", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct", "content": "x" * 16385}),
        ("CampaignStarted", {"companyId": "acme", "campaignId": 5, "name": "n"}),
        ("ContactTagged", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct"}),
        ("LeadAssigned", {"companyId": "acme", "leadId": "l"}),
        ("Emit", {"companyId": ["acme"], "room": "company:acme", "event": "a:b"}),
    ],
)
def test_invalid_details_are_dropped_and_nothing_is_applied(
    acme: dict[str, Any], gateway: RecordingGateway, detail_type: str, detail: dict[str, Any]
) -> None:
    assert publish(detail_type, detail) == {"status": "dropped"}
    assert everything(gateway) == []
    assert acme["ben"].ok("notification:list")["notifications"] == []
    assert acme["ana"].ok("conversation:history", {"conversationId": "c-1"})["messages"] == []


def test_unknown_detail_types_match_no_rule() -> None:
    assert publish("Unsubscribe", {"companyId": "acme"}) == {"status": "unrouted"}


@pytest.fixture
def faults(session: boto3.session.Session) -> FaultInjector:
    return FaultInjector(session)


def today(peer: Peer) -> dict[str, Any]:
    report: dict[str, Any] = peer.ok("analytics:request", {"period": "today"})
    return report


def test_a_redelivery_after_the_message_failed_to_store_applies_each_effect_once(
    faults: FaultInjector, acme: dict[str, Any], gateway: RecordingGateway
) -> None:
    """The first delivery opens the conversation, then storing the message is throttled past the retries;
    the redelivery stores the message and counts both the opening and the message, once."""
    detail = {"companyId": "acme", "conversationId": "wa-7", "contactId": "ct-7", "content": "hello"}
    faults.fail("TransactWriteItems", times=3)
    with pytest.raises(ClientError):
        publish("MessageReceived", detail, event_id="evt-7")
    assert faults.injected["TransactWriteItems"] == 3
    assert publish("MessageReceived", detail, event_id="evt-7") == {"status": "applied"}
    assert publish("MessageReceived", detail, event_id="evt-7") == {"status": "applied"}

    ben: Peer = acme["ben"]
    assert [f["data"]["conversation"]["id"] for f in ben.received("conversation:updated")] == ["wa-7"]
    assert (today(ben)["totalConversations"], today(ben)["totalMessages"]) == (1, 1)
    assert [m["content"] for m in ben.ok("conversation:history", {"conversationId": "wa-7"})["messages"]] == ["hello"]


def test_a_redelivery_after_the_counter_was_claimed_does_not_count_again(
    acme: dict[str, Any], gateway: RecordingGateway, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first delivery counts, then fails announcing; the redelivery finds everything counted."""
    detail = {"companyId": "acme", "conversationId": "wa-8", "contactId": "ct-8", "content": "hi"}
    real_count = services.analytics.count

    def count_then_fail(*args: Any) -> None:
        real_count(*args)
        raise ConnectionError("died after counting")

    monkeypatch.setattr(services.analytics, "count", count_then_fail)
    with pytest.raises(ConnectionError):
        publish("MessageReceived", detail, event_id="evt-8")
    monkeypatch.undo()
    assert publish("MessageReceived", detail, event_id="evt-8") == {"status": "applied"}
    assert (today(acme["ben"])["totalConversations"], today(acme["ben"])["totalMessages"]) == (1, 1)


def test_a_notify_that_cannot_fit_a_frame_is_refused_at_the_door(
    acme: dict[str, Any], gateway: RecordingGateway
) -> None:
    big = {"blob": "x" * 200_000}
    with pytest.raises(ValidationError):
        Notify(companyId="acme", userId="ben", type="task", title="t", data=big)
    detail = {"companyId": "acme", "userId": "ben", "type": "task", "title": "t", "data": big}
    assert publish("Notify", detail) == {"status": "dropped"}
    assert everything(gateway) == []
    assert acme["ben"].ok("notification:list", {"limit": 1})["notifications"] == []
    # The largest that is accepted fits both its push and a list page on its own.
    fits = {"blob": "x" * 120_000}
    assert publish("Notify", detail | {"data": fits}) == {"status": "applied"}
    reply = acme["ben"].act("notification:list", {"limit": 1}, ack_id="a" * 64)
    assert reply["data"]["notifications"][0]["data"] == fits
    assert len(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()) <= 128 * 1024


def test_an_emit_that_cannot_fit_a_frame_is_refused_at_the_door(
    acme: dict[str, Any], gateway: RecordingGateway
) -> None:
    big = {"blob": "x" * 140_000}
    with pytest.raises(ValidationError):
        Emit(companyId="acme", room="company:acme", event="crm:big", data=big)
    assert publish("Emit", {"companyId": "acme", "room": "company:acme", "event": "crm:big", "data": big}) == {
        "status": "dropped"
    }
    assert everything(gateway) == []
