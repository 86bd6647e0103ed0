"""The contract: every frame a session of every action sends, through both codecs, is what docs/asyncapi.yaml says.

Each frame is checked against the one message of the committed document that describes it (the action's ack or
reply, the event, the error), with the document's own JSON schemas, as a client generated from the document would
check it. The session reaches every list past its first page (a cursor is only non-null there), every error path a
client can provoke, and every backend detail-type; at the end every message the document says the server sends
must have been seen."""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import re
import time
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from roomcast_local.asyncapi import OFFSET
from roomcast_local.testing import (
    Peer,
    RecordingGateway,
    SocketIoPeer,
    deliver,
    lifecycle_event,
    publish,
    run_delayed,
)
from shared.protocol import socketio
from shared.protocol.outbound import EVENTS, REPLIES
from shared.protocol.recovery import recoverable
from shared.wiring import services as runtime
from shared.wiring.services import Services, build_services
from shared.wiring.settings import settings
from tests.conftest import make_token

# The users online in acme, past which its presence changes are coalesced (the session has 6, then 7).
PRESENCE_DIGEST_AT = 6

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
CONVERSATIONS, NOTIFICATIONS, ANALYTICS = "/conversations", "/notifications", "/analytics"


class SessionPeer(SocketIoPeer):
    """A Socket.IO connection whose handshake asked for sessions (`recovery=1`)."""

    def _socketio(self, event: dict[str, Any]) -> dict[str, Any]:
        event = super()._socketio(event)
        event["requestContext"]["authorizer"]["recovery"] = "1"
        return event


def _key(name: str) -> str:
    return name.replace(":", ".")


@functools.cache
def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _validator(message: str, part: str | None = None, channel: str = "roomcast") -> jsonschema.Draft202012Validator:
    """The committed document's schema of one message's payload (or of one property of it: `data`)."""
    document = _document()
    payload = document["channels"][channel]["messages"][message]["payload"]
    schema = payload if part is None else payload["properties"][part]
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def _server_messages() -> set[str]:
    """Every message of the document that the server sends: what a complete session must have shown."""
    operations = [
        operation
        for operation in _document()["operations"].values()
        if operation["channel"]["$ref"] == "#/channels/roomcast"
    ]
    references = [
        reference["$ref"]
        for operation in operations
        for reference in (
            operation.get("reply", {}).get("messages", []) if operation["action"] == "send" else operation["messages"]
        )
    ]
    return {reference.rsplit("/", 1)[-1] for reference in references}


class Contract:
    """Checks frames against the document and remembers which of its messages (and ack outcomes) it saw."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        # Every refusal, not just the first: one run names every drift.
        self.refusals: list[str] = []

    def _valid(self, message: str, value: Any, part: str | None = None) -> None:
        validator = _validator(message, part)
        if validator.is_valid(value):
            self.seen.add(message)
            return
        # Under a oneOf (an ack's two shapes) the deepest error says what is wrong.
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        where = "/".join(str(part) for part in error.absolute_path)
        self.refusals.append(f"{message} at {where or '.'}: {error.message}")

    def detail(self, detail_type: str, detail: dict[str, Any]) -> None:
        """A backend event's detail, as the document's bus channel describes it."""
        if not _validator(detail_type, None, "backend").is_valid(detail):
            self.refusals.append(f"backend {detail_type} refuses {detail}")
        self.seen.add(f"backend {detail_type}")

    def native(self, frame: dict[str, Any], action: str | None = None) -> None:
        """A native frame: the answer to `action`, or (with no action) something pushed to the connection."""
        name = frame["event"]
        if name == "ack":
            assert action is not None, frame
            self._valid(f"{_key(action)}.ack", frame)
            self.seen.add("ack ok" if frame["ok"] else "ack failed")
        elif name == "error":
            self._valid("error", frame)
        elif action is not None and name == REPLIES[action].event:
            self._valid(f"{_key(action)}.reply", frame)
        elif name in EVENTS:
            self._valid(f"{_key(name)}.event", frame)
        else:
            self._valid("emitted.event", frame)

    def socketio_ack(self, text: str | None, action: str) -> dict[str, Any]:
        """A Socket.IO ACK: its one argument is the native ack's `{ok, data}` or `{ok, error}`; returns the data."""
        packet = socketio.parse(text, 1 << 20)
        assert isinstance(packet, socketio.Packet), text
        assert packet.type is socketio.PacketType.ACK, text
        (body,) = packet.data
        self._valid(f"{_key(action)}.ack", {"event": "ack", "ackId": str(packet.ack_id), **body})
        assert body["ok"] is True, text
        data: dict[str, Any] = body["data"]
        return data

    def socketio(self, text: str) -> None:
        """A Socket.IO push: an EVENT packet whose data is the native event's `data`, in the event's namespace."""
        packet = socketio.parse(text, 1 << 20)
        if not isinstance(packet, socketio.Packet) or packet.type is not socketio.PacketType.EVENT:
            return  # Engine.IO's open packet and pings: not the document's
        name, data, *offset = packet.data
        if offset:  # a session's recoverable event: its offset is the last argument
            assert re.fullmatch(OFFSET["pattern"], offset[0]), text
            self.seen.add("socket.io offset")
        if name in EVENTS:
            # An event of no namespace (`session`) arrives in each namespace a Socket.IO client opened.
            assert EVENTS[name].namespace in (None, packet.namespace), text
            self._valid(f"{_key(name)}.event", data, "data")
            self.seen.add(f"socket.io {name}")
        else:
            self._valid("emitted.event", data, "data")


@pytest.fixture
def contract() -> Contract:
    return Contract()


@pytest.fixture
def unhurried(services: Services, gateway: RecordingGateway) -> Services:
    """The handlers' services without the rate limit's burst in the way: the session sends about 150 frames a
    second from one connection. Past 6 users online, acme's presence goes out in digests."""
    roomy = build_services(
        dataclasses.replace(
            settings(), rate_per_second=10_000.0, rate_burst=10_000, presence_digest_threshold=PRESENCE_DIGEST_AT
        ),
        gateway=gateway,
        deferrer=services.deferrer,
        delayer=services.delayer,
    )
    runtime.install(roomy)
    return roomy


def _pages(peer: Peer, contract: Contract, action: str, data: dict[str, Any], follow: str) -> list[list[Any]]:
    """Every page of a list, following `nextCursor` (passed back as `follow`), each ack checked: the entries of
    each page. A cursor that leads to an empty page is a drift too (docs/protocol.md: null at the end)."""
    entries = {"conversation:history": "messages", "presence:list": "users", "notification:list": "notifications"}
    pages: list[list[Any]] = []
    while True:
        ack = peer.act(action, data, ack_id="page")
        contract.native(ack, action)
        assert ack["ok"], ack
        page = ack["data"]
        if pages and not page[entries[action]]:
            contract.refusals.append(f"{action}: nextCursor {data[follow]!r} led to an empty page")
        pages.append(page[entries[action]])
        if page["nextCursor"] is None:
            return pages
        data = {**data, follow: page["nextCursor"]}
        assert len(pages) < 20, "the list never ends"


def test_every_frame_of_a_session_of_every_action_is_as_the_document_says(
    unhurried: Services, gateway: RecordingGateway, contract: Contract
) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    outsider = Peer(gateway, "zed-1", "zed", "globex").connect()
    dora = SocketIoPeer(gateway, "dora-1", "dora", "acme").connect()
    for namespace in (CONVERSATIONS, NOTIFICATIONS, ANALYTICS):
        assert dora.send(f"40{namespace},") is not None
    cleo = Peer(gateway, "cleo-1", "cleo", "acme").connect()  # status:online reaches both codecs
    # A native session (recovery=1): its `session` event, and an offset on every recoverable event it hears.
    opening = lifecycle_event("connect", "fay-1", "fay", "acme")
    opening["requestContext"]["authorizer"]["recovery"] = "1"
    opening["queryStringParameters"] = {"token": "t", "recovery": "1"}
    deliver(opening)
    fay = Peer(gateway, "fay-1", "fay", "acme")
    gus = SessionPeer(gateway, "gus-1", "gus", "acme").connect()
    assert gus.send(f"40{CONVERSATIONS},") is None  # the CONNECT reply is posted, then `session`

    def both(peer: Peer, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The action with an ackId, then without: the ack's data (the reply event, if any, is checked too)."""
        with_ack = peer.act(action, data, ack_id="a")
        contract.native(with_ack, action)
        assert with_ack["ok"], with_ack
        without = peer.raw(json.dumps({"action": action, **({"data": data} if data is not None else {})}))
        if REPLIES[action].event is None:
            # Nothing, unless repeating it failed (a second delete is a conflict): then an error event.
            assert without is None or without["event"] == "error", without
        else:
            assert without is not None, action
        if without is not None:
            contract.native(without, action)
        result: dict[str, Any] = with_ack["data"]
        return result

    def refused(peer: Peer, action: str, data: dict[str, Any] | None, code: str) -> None:
        """The action fails with `code`, as an ack and as an error event."""
        ack = peer.act(action, data, ack_id="no")
        contract.native(ack, action)
        assert (ack["ok"], ack["error"]["code"]) == (False, code), ack
        error = peer.act(action, data, ack_id=None)
        contract.native(error, action)
        assert (error["event"], error["data"]["code"], error["data"]["action"]) == ("error", code, action), error

    both(ana, "analytics:subscribe")
    contract.socketio_ack(dora.send(f'42{ANALYTICS},1["analytics:subscribe"]'), "analytics:subscribe")
    conversation = both(ana, "conversation:create", {"subject": "Pricing"})["conversation"]["id"]
    for peer in (ana, ben):
        both(peer, "join:conversation", {"conversationId": conversation})
    contract.socketio_ack(dora.send(f'42{CONVERSATIONS},2["join:conversation","{conversation}"]'), "join:conversation")
    message = both(ana, "message:send", {"conversationId": conversation, "content": "hello", "clientMessageId": "m-1"})
    both(ana, "message:send", {"conversationId": conversation, "content": "no client id"})
    for index in range(3):
        ana.ok("message:send", {"conversationId": conversation, "content": f"message {index}"})
    both(ana, "message:edit", {"conversationId": conversation, "messageId": message["id"], "content": "hello!"})
    both(ben, "conversation:typing", {"conversationId": conversation, "isTyping": True})
    both(ana, "conversation:update", {"conversationId": conversation, "status": "converted"})

    # Six messages (the first sent twice, idempotently: the retry's reservation is skipped, decision 0087): pages of
    # two, backwards then forwards.
    backwards = _pages(ana, contract, "conversation:history", {"conversationId": conversation, "limit": 2}, "before")
    forwards = _pages(
        ana, contract, "conversation:history", {"conversationId": conversation, "limit": 2, "after": 0}, "after"
    )
    assert [[m["seq"] for m in page] for page in backwards] == [[6, 7], [4, 5], [1, 3]]
    assert [m["seq"] for page in forwards for m in page] == [1, 3, 4, 5, 6, 7]
    both(ana, "conversation:history", {"conversationId": conversation, "limit": 2})

    # Six users online in acme: pages of one.
    listed = _pages(ana, contract, "presence:list", {"limit": 1}, "cursor")
    assert [user["userId"] for page in listed for user in page] == ["ana", "ben", "cleo", "dora", "fay", "gus"]
    both(ana, "presence:list", {"limit": 1})

    both(ana, "analytics:request", {"period": "week"})
    both(ana, "ping")
    renewed = make_token({"userId": "ana", "companyId": "acme", "exp": int(time.time()) + 3600})
    both(ana, "auth:refresh", {"token": renewed})
    both(ben, "auth:refresh", {"token": make_token({"userId": "ben", "companyId": "acme"})})  # a token without exp

    published: list[tuple[str, dict[str, Any]]] = [
        ("Notify", {"companyId": "acme", "userId": "ana", "type": "t", "title": "First", "data": {"n": 1}}),
        ("Notify", {"companyId": "acme", "userId": "dora", "type": "t", "title": "For dora", "body": "b"}),
        (
            "LeadAssigned",
            {"companyId": "acme", "leadId": "l-1", "assigneeUserId": "ana", "conversationId": conversation},
        ),
        ("LeadAssigned", {"companyId": "acme", "leadId": "l-2", "assigneeUserId": "ana"}),
        (
            "MessageReceived",
            {"companyId": "acme", "conversationId": conversation, "contactId": "ct-1", "content": "hi"},
        ),
        ("CampaignStarted", {"companyId": "acme", "campaignId": "cp-1", "name": "Spring"}),
        ("ContactTagged", {"companyId": "acme", "conversationId": conversation, "contactId": "ct-1", "tag": "vip"}),
        ("Emit", {"companyId": "acme", "room": "company:acme", "event": "deal:won", "data": {"amount": 1}}),
        ("Emit", {"companyId": "acme", "room": "user:dora", "event": "task:due", "data": {"id": "t-1"}}),
        ("Emit", {"companyId": "acme", "room": f"conversation:{conversation}", "event": "crm:note", "data": {}}),
        ("Emit", {"companyId": "acme", "room": "analytics:acme", "event": "report:ready", "data": {"url": None}}),
    ]
    for detail_type, detail in published:
        contract.detail(detail_type, detail)
        assert publish(detail_type, detail)["status"] == "applied", detail_type
    # An Emit may not pass itself off as one of roomcast's events, which the document describes otherwise.
    spoof = {"companyId": "acme", "room": "company:acme", "event": "message:new", "data": {"content": "fake"}}
    assert publish("Emit", spoof)["status"] == "dropped"

    # Three notifications for ana: pages of one, then the unread ones.
    notifications = _pages(ana, contract, "notification:list", {"limit": 1}, "cursor")
    assert [n["title"] for page in notifications for n in page][-1] == "First"
    assert sum(len(page) for page in notifications) == 3
    first = notifications[0][0]["id"]
    both(ana, "notification:list", {"limit": 1, "unreadOnly": True})
    both(ana, "notification:read", {"notificationId": first})
    both(ana, "notification:all_read")
    dora_list = contract.socketio_ack(dora.send(f'42{NOTIFICATIONS},5["notification:list",{{}}]'), "notification:list")
    dora_notification = dora_list["notifications"][0]["id"]
    contract.socketio_ack(
        dora.send(f'42{NOTIFICATIONS},6["notification:read","{dora_notification}"]'), "notification:read"
    )
    contract.socketio_ack(dora.send(f'42{NOTIFICATIONS},7["notification:all_read"]'), "notification:all_read")
    contract.socketio_ack(dora.send(f'42{CONVERSATIONS},8["presence:list",{{"limit":2}}]'), "presence:list")

    # What a client can get wrong, answered with the codes of docs/protocol.md.
    refused(ana, "message:send", {"conversationId": conversation, "content": ""}, "bad_request")
    refused(
        ana, "message:send", {"conversationId": conversation, "content": "x" * (16 * 1024 + 1)}, "payload_too_large"
    )
    refused(outsider, "conversation:history", {"conversationId": conversation}, "not_found")
    refused(outsider, "join:conversation", {"conversationId": conversation}, "not_found")
    refused(
        ben, "message:edit", {"conversationId": conversation, "messageId": message["id"], "content": "x"}, "forbidden"
    )
    refused(ana, "notification:read", {"notificationId": "n-unknown"}, "not_found")
    refused(ana, "conversation:history", {"conversationId": conversation, "after": 5, "before": 2}, "bad_request")
    refused(ana, "auth:refresh", {"token": "not-a-token"}, "unauthorized")
    # An unknown action has no operation of its own: its ack is the failing branch that every ack shares.
    unknown = ana.act("no:such", None, ack_id="u")
    assert unknown["error"]["code"] == "unknown_action", unknown
    contract.native(unknown, "ping")
    for body in ("not json", json.dumps({"action": "no:such"}), json.dumps({"action": "ping", "data": []})):
        error = ana.raw(body)
        assert error is not None, body
        contract.native(error)

    both(ana, "message:delete", {"conversationId": conversation, "messageId": message["id"]})
    both(ana, "analytics:unsubscribe")
    both(ana, "leave:conversation", {"conversationId": conversation})
    cleo.disconnect()
    # Ending access (docs/protocol.md, kick and revoke): a native connection is told why, a Socket.IO one gets
    # DISCONNECT packets, not an event.
    dan = Peer(gateway, "dan-1", "dan", "acme").connect()
    eli = SocketIoPeer(gateway, "eli-1", "eli", "acme").connect()
    assert eli.send(f"40{CONVERSATIONS},") is not None
    ended: list[tuple[str, dict[str, Any]]] = [
        ("Disconnect", {"companyId": "acme", "userId": "dan", "reason": "account suspended"}),
        ("RevokeTokens", {"companyId": "acme", "userId": "eli", "issuedBefore": "2026-11-26T03:44:21Z"}),
    ]
    for detail_type, detail in ended:
        contract.detail(detail_type, detail)
        assert publish(detail_type, detail)["status"] == "applied", detail_type
    assert [frame["event"] for frame in dan.received()][-1:] == ["disconnect"]
    assert eli.pushed()[-1] == f"41{CONVERSATIONS},"
    # eli was the seventh user online: from eli's online on, acme's presence is in a digest (eli came and went).
    run_delayed()
    assert [frame["data"] for frame in ana.received("presence:changed")] == [{"online": [], "offline": ["dan"]}]

    for peer in (ana, ben, outsider, dan, fay):
        for frame in peer.received():
            contract.native(frame)
    offsets = 0
    for frame in fay.received():
        if frame["event"] == "session":
            continue
        assert ("offset" in frame) == recoverable(frame), frame
        if "offset" in frame:
            assert re.fullmatch(OFFSET["pattern"], frame["offset"]), frame
            offsets += 1
    assert offsets > 0, "the session heard recoverable events"
    for text in dora.pushed() + gus.pushed():
        contract.socketio(text)
    assert "socket.io offset" in contract.seen, "the Socket.IO session heard recoverable events"
    assert outsider.received() == [], "nothing crosses companies"

    assert contract.refusals == [], "\n".join(contract.refusals)
    missing = _server_messages() - contract.seen
    assert missing == set(), f"the session never showed these messages of the document: {sorted(missing)}"
    assert {"ack ok", "ack failed"} <= contract.seen
    backend = {f"backend {detail_type}" for detail_type in _document()["channels"]["backend"]["messages"]}
    assert backend - contract.seen == set(), "every backend detail-type was published"
    socketio_events = {f"socket.io {name}" for name in EVENTS if name != "disconnect"}
    assert socketio_events - contract.seen == set(), "every event reaches a Socket.IO client as documented"


SRC = Path(__file__).resolve().parents[1] / "src"
# Where frames are built: the one backend event whose data is the publisher's own (Emit) builds its frame itself.
HAND_BUILT_ALLOWED = {("shared/routes/publishing.py", "event_frame")}


@pytest.mark.parametrize(
    "path",
    sorted(
        str(path.relative_to(SRC))
        for folder in ("handlers", "shared/routes", "shared/wiring", "shared/domain")
        for path in (SRC / folder).glob("*.py")
    ),
)
def test_handlers_and_domain_rules_build_what_they_send_from_the_outbound_models(path: str) -> None:
    """`outbound.answer` and `outbound.server_event` check the model against the documented one: an `Outcome`, an
    `event_frame` or a frame's dict (`{"event": ...}`) built by hand would bypass that check."""
    tree = ast.parse((SRC / path).read_text(encoding="utf-8"))
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {name for name in called & {"Outcome", "event_frame"} if (path, name) not in HAND_BUILT_ALLOWED} == set()
    frames = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        and any(isinstance(key, ast.Constant) and key.value == "event" for key in node.keys)
    ]
    assert frames == [], f"{path} builds a frame by hand at lines {frames}"
