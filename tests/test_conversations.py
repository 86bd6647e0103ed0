"""The /conversations namespace: every route's success and failure paths."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from roomcast_local.testing import Peer, RecordingGateway
from shared.wiring.services import Services, services


@pytest.fixture
def ana(services: Services, gateway: RecordingGateway) -> Peer:
    return Peer(gateway, "ana-1", "ana", "acme").connect()


@pytest.fixture
def ben(services: Services, gateway: RecordingGateway) -> Peer:
    return Peer(gateway, "ben-1", "ben", "acme").connect()


def open_conversation(peer: Peer, **fields: str) -> str:
    conversation_id: str = peer.ok("conversation:create", fields)["conversation"]["id"]
    return conversation_id


def test_create_returns_the_conversation_and_tells_the_company(ana: Peer, ben: Peer) -> None:
    created = ana.ok("conversation:create", {"subject": "Pricing", "contactId": "ct-1", "assigneeUserId": "ben"})
    conversation = created["conversation"]
    assert conversation["status"] == "open"
    assert conversation["subject"] == "Pricing"
    assert conversation["assigneeUserId"] == "ben"
    assert conversation["createdBy"] == "ana"
    assert conversation["createdAt"].endswith("Z")
    assert len(conversation["createdAt"]) == 24
    (announced,) = ben.received("conversation:updated")
    assert announced["data"]["conversation"] == conversation


def test_the_creator_is_in_the_new_conversation(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana)
    ben.ok("join:conversation", {"conversationId": conversation})
    ben.ok("message:send", {"conversationId": conversation, "content": "hi"})
    assert [f["data"]["content"] for f in ana.received("message:new")] == ["hi"]


def test_send_stores_then_broadcasts_to_the_room_and_confirms_to_the_sender(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana)
    ben.ok("join:conversation", {"conversationId": conversation})

    reply = ben.act(
        "message:send", {"conversationId": conversation, "content": "hello", "clientMessageId": "m-1"}, None
    )

    assert reply["event"] == "message:sent"
    sent = reply["data"]
    assert sent["clientMessageId"] == "m-1"
    for peer in (ana, ben):
        (new,) = peer.received("message:new")
        assert new["namespace"] == "/conversations"
        assert new["data"]["id"] == sent["id"]
        assert new["data"]["content"] == "hello"
        assert new["data"]["fromUserId"] == "ben"
        assert new["data"]["senderType"] == "agent"
        assert new["data"]["conversationId"] == conversation
    history = ana.ok("conversation:history", {"conversationId": conversation})["messages"]
    assert [m["id"] for m in history] == [sent["id"]]


def test_a_retried_send_returns_the_same_id_and_broadcasts_nothing_new(ana: Peer) -> None:
    conversation = open_conversation(ana)
    data = {"conversationId": conversation, "content": "once", "clientMessageId": "retry-1"}
    first = ana.ok("message:send", data)
    second = ana.ok("message:send", data)
    assert first == second
    assert len(ana.received("message:new")) == 1
    assert len(ana.ok("conversation:history", {"conversationId": conversation})["messages"]) == 1


def test_client_message_ids_are_per_sender(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana)
    first = ana.ok("message:send", {"conversationId": conversation, "content": "a", "clientMessageId": "same"})
    second = ben.ok("message:send", {"conversationId": conversation, "content": "b", "clientMessageId": "same"})
    assert first["id"] != second["id"]


def test_sends_without_client_message_id_are_distinct(ana: Peer) -> None:
    conversation = open_conversation(ana)
    ids = {ana.ok("message:send", {"conversationId": conversation, "content": "x"})["id"] for _ in range(3)}
    assert len(ids) == 3


def test_send_to_an_unknown_conversation_is_not_found_and_stores_nothing(ana: Peer) -> None:
    assert ana.error("message:send", {"conversationId": "nope", "content": "x"}) == "not_found"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"content": "x"}, "bad_request"),
        ({"conversationId": "c", "content": ""}, "bad_request"),
        ({"conversationId": "c", "content": 5}, "bad_request"),
        ({"conversationId": "c", "content": "x", "extra": 1}, "bad_request"),
        ({"conversationId": "bad id!", "content": "x"}, "bad_request"),
        ({"conversationId": "c" * 129, "content": "x"}, "bad_request"),
        ({"conversationId": "c", "content": "x", "clientMessageId": 12}, "bad_request"),
        ({"conversationId": "c", "content": "x" * (16 * 1024 + 1)}, "payload_too_large"),
        ({"conversationId": "c", "content": "é" * (8 * 1024 + 1)}, "payload_too_large"),
    ],
)
def test_send_validates_its_input(ana: Peer, data: dict[str, object], code: str) -> None:
    assert ana.error("message:send", data) == code


def test_content_of_exactly_the_limit_is_accepted(ana: Peer) -> None:
    conversation = open_conversation(ana)
    ana.ok("message:send", {"conversationId": conversation, "content": "x" * 16 * 1024})


def test_only_the_author_edits_and_the_room_hears_of_it(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana)
    ben.ok("join:conversation", {"conversationId": conversation})
    message_id = ana.ok("message:send", {"conversationId": conversation, "content": "helo"})["id"]

    ref = {"conversationId": conversation, "messageId": message_id}
    assert ben.error("message:edit", {**ref, "content": "hijack"}) == "forbidden"
    edited = ana.ok("message:edit", {**ref, "content": "hello"})["message"]

    assert edited["content"] == "hello"
    assert "editedAt" in edited
    (update,) = ben.received("message:updated")
    assert update["data"]["content"] == "hello"
    history = ben.ok("conversation:history", {"conversationId": conversation})["messages"]
    assert history[0]["content"] == "hello"


def test_only_the_author_deletes_and_history_keeps_a_tombstone(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana)
    ben.ok("join:conversation", {"conversationId": conversation})
    message_id = ana.ok("message:send", {"conversationId": conversation, "content": "oops"})["id"]
    ref = {"conversationId": conversation, "messageId": message_id}

    assert ben.error("message:delete", ref) == "forbidden"
    ana.ok("message:delete", ref)

    (deleted,) = ben.received("message:deleted")
    assert deleted["data"]["id"] == message_id
    (tombstone,) = ben.ok("conversation:history", {"conversationId": conversation})["messages"]
    assert tombstone["deleted"] is True
    assert "content" not in tombstone
    assert ana.error("message:edit", {**ref, "content": "back"}) == "conflict"
    assert ana.error("message:delete", ref) == "conflict"


def test_editing_or_deleting_an_unknown_message_is_not_found(ana: Peer) -> None:
    conversation = open_conversation(ana)
    ref = {"conversationId": conversation, "messageId": "missing"}
    assert ana.error("message:edit", {**ref, "content": "x"}) == "not_found"
    assert ana.error("message:delete", ref) == "not_found"


def test_typing_reaches_the_room_but_not_the_typist(ana: Peer, ben: Peer, gateway: RecordingGateway) -> None:
    conversation = open_conversation(ana)
    ben.ok("join:conversation", {"conversationId": conversation})
    outsider = Peer(gateway, "carl-1", "carl", "acme").connect()

    ben.ok("conversation:typing", {"conversationId": conversation, "isTyping": True})

    assert [f["data"] for f in ana.received("conversation:typing")] == [
        {"conversationId": conversation, "userId": "ben", "isTyping": True}
    ]
    assert ben.received("conversation:typing") == []
    assert outsider.received("conversation:typing") == []


def test_leave_stops_delivery(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana)
    ben.ok("join:conversation", {"conversationId": conversation})
    ben.ok("leave:conversation", {"conversationId": conversation})
    ana.ok("message:send", {"conversationId": conversation, "content": "anyone?"})
    assert ben.received("message:new") == []


def test_join_and_leave_answer_with_the_room(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana)
    assert ben.ok("join:conversation", {"conversationId": conversation}) == {
        "conversationId": conversation,
        "room": f"conversation:{conversation}",
    }
    assert ben.error("join:conversation", {"conversationId": "missing"}) == "not_found"
    assert ben.error("leave:conversation", {"conversationId": "missing"}) == "not_found"


def test_update_changes_status_and_assignee_and_tells_the_company(ana: Peer, ben: Peer) -> None:
    conversation = open_conversation(ana, assigneeUserId="ana")
    updated = ben.ok(
        "conversation:update", {"conversationId": conversation, "status": "pending", "assigneeUserId": "ben"}
    )
    assert updated["conversation"]["status"] == "pending"
    assert updated["conversation"]["assigneeUserId"] == "ben"
    assert ana.received("conversation:updated")[-1]["data"] == updated

    unassigned = ana.ok("conversation:update", {"conversationId": conversation, "assigneeUserId": None})
    assert "assigneeUserId" not in unassigned["conversation"]
    assert unassigned["conversation"]["status"] == "pending"


@pytest.mark.parametrize(
    "data",
    [
        {"status": "archived"},
        {"status": 3},
        {},
        {"subject": ""},
        {"assigneeUserId": "no spaces please"},
    ],
)
def test_update_validates_its_input(ana: Peer, data: dict[str, object]) -> None:
    conversation = open_conversation(ana)
    assert ana.error("conversation:update", {"conversationId": conversation, **data}) == "bad_request"


def test_update_of_an_unknown_conversation_is_not_found(ana: Peer) -> None:
    assert ana.error("conversation:update", {"conversationId": "missing", "status": "closed"}) == "not_found"


@pytest.mark.parametrize("status", ["open", "pending", "closed", "converted"])
def test_every_status_can_be_set(ana: Peer, status: str) -> None:
    conversation = open_conversation(ana)
    result = ana.ok("conversation:update", {"conversationId": conversation, "status": status})
    assert result["conversation"]["status"] == status


def test_ping_answers_pong(ana: Peer) -> None:
    reply = ana.act("ping", ack_id=None)
    assert reply["event"] == "pong"
    assert reply["data"]["timestamp"].endswith("Z")
    assert ana.ok("ping")["timestamp"].endswith("Z")


def test_unknown_actions_and_garbage_reach_default_and_get_their_codes(ana: Peer) -> None:
    assert ana.error("conversation:archive", {"conversationId": "x"}) == "unknown_action"
    assert ana.raw('{"action": "nope"}') == {
        "event": "error",
        "data": {"code": "unknown_action", "message": "no action named 'nope'", "action": "nope"},
    }
    not_json = ana.raw("hello?")
    assert not_json is not None
    assert not_json["data"]["code"] == "bad_request"
    no_action = ana.raw('{"data": {}, "ackId": "4"}')
    assert no_action == {
        "event": "ack",
        "ackId": "4",
        "ok": False,
        "error": {"code": "bad_request", "message": "action must be a route name"},
    }


def test_a_routed_action_with_a_bad_frame_is_answered_exactly_once(ana: Peer) -> None:
    reply = ana.raw('{"action": "message:send", "data": "text", "ackId": "z"}')
    assert reply == {
        "event": "ack",
        "ackId": "z",
        "ok": False,
        "error": {"code": "bad_request", "message": "data must be a JSON object"},
    }
    assert ana.received() == []


def test_errors_never_leak_internals(ana: Peer, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("arn:aws:dynamodb:us-east-1:123:table/test-conversations exploded")

    monkeypatch.setattr(services.conversations, "get", explode)
    reply = ana.act("join:conversation", {"conversationId": "c"}, ack_id="boom")
    assert reply == {
        "event": "ack",
        "ackId": "boom",
        "ok": False,
        "error": {"code": "internal", "message": "internal error, try again later"},
    }


def test_conversation_reads_that_decide_an_answer_are_consistent(ana: Peer, ben: Peer) -> None:
    """A join, send or history right after a create or update must not read a stale copy (moto is always
    consistent, so the request itself is checked)."""
    conversation = open_conversation(ana)
    reads: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        request = json.loads(params["body"])
        if request["Key"]["sk"] == {"S": "#conversation"}:
            reads.append(request)

    # Registered on the clients the handlers use: they were made before this test's hooks. A send reads the
    # conversation through a client of its own, beside its other reads (decision 0047).
    runtime = services()
    for store in (runtime.conversations, runtime.messages.readers().conversations):
        store._table.meta.client.meta.events.register("before-call.dynamodb.GetItem", record)
    ben.ok("join:conversation", {"conversationId": conversation})
    ben.ok("message:send", {"conversationId": conversation, "content": "hi"})
    ben.ok("conversation:history", {"conversationId": conversation})
    assert len(reads) == 3
    assert all(read.get("ConsistentRead") is True for read in reads)


def test_a_conversation_created_converted_counts_as_a_conversion(ana: Peer) -> None:
    created = ana.ok("conversation:create", {"status": "converted"})["conversation"]
    assert created["status"] == "converted"
    assert "convertedAt" in created
    report = ana.ok("analytics:request", {"period": "today"})
    assert (report["totalConversations"], report["conversionRate"]) == (1, 1)
    # Setting the status again is not a second conversion.
    ana.ok("conversation:update", {"conversationId": created["id"], "status": "converted"})
    open_conversation(ana)
    assert ana.ok("analytics:request", {"period": "today"})["conversionRate"] == 0.5


def test_a_worst_case_message_fits_every_reply_and_event_it_appears_in(
    ana: Peer, ben: Peer, gateway: RecordingGateway
) -> None:
    """Content is capped at 16 KiB of UTF-8; quotes and backslashes double when JSON escapes them (as far as
    the 32 KiB inbound frame lets them in; the bus lets in all 16 KiB)."""
    conversation = open_conversation(ana)
    ben.ok("join:conversation", {"conversationId": conversation})
    worst = '"\\' * 8000
    frames = [ana.act("message:send", {"conversationId": conversation, "content": worst}, ack_id="a" * 64)]
    message_id = frames[0]["data"]["id"]
    data = {"conversationId": conversation, "messageId": message_id, "content": worst[::-1]}
    frames.append(ana.act("message:edit", data, ack_id="b" * 64))
    for _ in range(3):
        ana.ok("message:send", {"conversationId": conversation, "content": worst})
    frames.append(ana.act("conversation:history", {"conversationId": conversation, "limit": 100}, ack_id="c" * 64))
    frames += gateway.events("ben-1")
    assert frames[-1]["data"]["content"] == worst
    assert frames[2]["data"]["messages"][0]["content"] == worst[::-1]
    for frame in frames:
        assert len(json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()) <= 128 * 1024


class LostAnswer:
    """Once armed, the next PutItem is applied, then botocore, having lost its answer, sends it again (as
    after a 5xx or a read timeout). Hooked before the services' clients are made."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.armed = False
        session.events.register_first("needs-retry.dynamodb.PutItem", self._lose)  # type: ignore[arg-type]

    def _lose(self, attempts: int, **_: Any) -> int | None:
        if self.armed and attempts == 1:
            self.armed = False
            return 0
        return None


@pytest.fixture
def lost_answer(session: boto3.session.Session) -> LostAnswer:
    return LostAnswer(session)


@pytest.mark.parametrize("step", ["$connect", "conversation:create"])
def test_a_write_whose_answer_was_lost_is_still_a_success(
    lost_answer: LostAnswer, services: Services, gateway: RecordingGateway, step: str
) -> None:
    lost_answer.armed = step == "$connect"
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    assert services.connections.get("ana-1") is not None
    lost_answer.armed = True
    created = ana.ok("conversation:create", {"subject": "resent"})["conversation"]
    assert [f["data"]["conversation"]["id"] for f in ana.received("conversation:updated")] == [created["id"]]


def test_a_send_without_a_client_message_id_is_counted_once_without_a_claim(
    lost_answer: LostAnswer, services: Services, gateway: RecordingGateway
) -> None:
    """No retry can find a message without a clientMessageId, so the send that stored it counts it
    (decision 0068), once even when botocore resent its write; each new attempt is a new message, counted."""
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    conversation = ana.ok("conversation:create", {})["conversation"]["id"]
    lost_answer.armed = True
    first = ana.ok("message:send", {"conversationId": conversation, "content": "resent"})
    ana.ok("message:send", {"conversationId": conversation, "content": "again"})
    stored = ana.ok("conversation:history", {"conversationId": conversation})["messages"]
    assert [message["seq"] for message in stored] == [first["seq"], first["seq"] + 1]
    assert ana.ok("analytics:request", {"period": "today"})["totalMessages"] == 2
