"""Two companies, every cross-company attempt: each answers not_found and nothing crosses."""

from __future__ import annotations

from typing import Any

import pytest

from roomcast_local.testing import Peer, RecordingGateway
from shared.wiring.services import Services


@pytest.fixture
def world(services: Services, gateway: RecordingGateway) -> dict[str, Any]:
    acme = Peer(gateway, "acme-1", "ana", "acme").connect()
    acme_watch = Peer(gateway, "acme-2", "amy", "acme").connect()
    globex = Peer(gateway, "globex-1", "gus", "globex").connect()
    conversation = acme.ok("conversation:create", {"subject": "secret deal"})["conversation"]["id"]
    acme_watch.ok("join:conversation", {"conversationId": conversation})
    message = acme.ok("message:send", {"conversationId": conversation, "content": "confidential"})["id"]
    return {
        "acme": acme,
        "watch": acme_watch,
        "globex": globex,
        "conversation": conversation,
        "message": message,
    }


ATTEMPTS: list[tuple[str, dict[str, Any]]] = [
    ("join:conversation", {}),
    ("leave:conversation", {}),
    ("message:send", {"content": "intrusion"}),
    ("message:send", {"content": "intrusion", "clientMessageId": "x-1"}),
    ("message:edit", {"messageId": "$message", "content": "defaced"}),
    ("message:delete", {"messageId": "$message"}),
    ("conversation:typing", {"isTyping": True}),
    ("conversation:history", {}),
    ("conversation:history", {"after": "$message"}),
    ("conversation:update", {"status": "closed"}),
    ("conversation:update", {"assigneeUserId": "gus"}),
]


@pytest.mark.parametrize(("action", "extra"), ATTEMPTS)
def test_another_companys_conversation_does_not_exist_for_you(
    world: dict[str, Any], gateway: RecordingGateway, action: str, extra: dict[str, Any]
) -> None:
    globex: Peer = world["globex"]
    data = {"conversationId": world["conversation"]}
    data.update({key: world["message"] if value == "$message" else value for key, value in extra.items()})
    gateway.clear()

    assert globex.error(action, data) == "not_found"

    # Nothing reached acme, and acme's data is as it was.
    assert gateway.frames == {}
    acme: Peer = world["acme"]
    history = acme.ok("conversation:history", {"conversationId": world["conversation"]})
    assert [(m["id"], m.get("content")) for m in history["messages"]] == [(world["message"], "confidential")]
    conversation = acme.ok("conversation:update", {"conversationId": world["conversation"], "subject": "still ours"})
    assert conversation["conversation"]["status"] == "open"
    assert "assigneeUserId" not in conversation["conversation"]


def test_presence_and_company_events_stay_inside_the_company(world: dict[str, Any]) -> None:
    globex: Peer = world["globex"]
    acme: Peer = world["acme"]
    assert {user["userId"] for user in globex.ok("presence:list")["users"]} == {"gus"}
    assert {user["userId"] for user in acme.ok("presence:list")["users"]} == {"ana", "amy"}
    assert globex.received() == []


def test_the_same_conversation_id_in_two_companies_never_mixes(services: Services, gateway: RecordingGateway) -> None:
    from shared.protocol.records import Conversation

    for company in ("acme", "globex"):
        services.conversations.create(Conversation(id="shared-id", companyId=company, createdAt="t", updatedAt="t"))
    acme = Peer(gateway, "a", "ana", "acme").connect()
    globex = Peer(gateway, "g", "gus", "globex").connect()
    acme.ok("join:conversation", {"conversationId": "shared-id"})
    globex.ok("join:conversation", {"conversationId": "shared-id"})

    acme.ok("message:send", {"conversationId": "shared-id", "content": "acme only"})

    assert [f["data"]["content"] for f in acme.received("message:new")] == ["acme only"]
    assert globex.received("message:new") == []
    assert globex.ok("conversation:history", {"conversationId": "shared-id"})["messages"] == []
