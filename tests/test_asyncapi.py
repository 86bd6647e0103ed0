"""docs/asyncapi.yaml: current, valid AsyncAPI 3, and true to the frames the handlers really send."""

from __future__ import annotations

import functools
import json
import re
import time
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from roomcast_local.asyncapi import OFFSET, document, namespaces, render
from roomcast_local.testing import Peer, RecordingGateway, deliver, lifecycle_event, publish
from shared.protocol.outbound import EVENTS, REPLIES, ErrorDetail, check_event
from shared.protocol.recovery import VOLATILE_EVENTS
from shared.wiring.services import Services
from tests.conftest import make_token

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SCHEMA = ROOT / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), "run `make asyncapi` and commit docs/asyncapi.yaml"


def test_the_document_is_valid_asyncapi_3() -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    committed = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    assert [error.message for error in validator.iter_errors(committed)] == []
    broken = {**committed, "operations": {"x": {"action": "publish", "channel": {"$ref": "#/channels/roomcast"}}}}
    assert list(validator.iter_errors(broken)), "the validator must see an invalid document"


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [found for inner in value.values() for found in _references(inner)]
    if isinstance(value, list):
        return [found for inner in value for found in _references(inner)]
    return []


def test_every_reference_in_the_document_resolves() -> None:
    generated = document()
    for reference in _references(generated):
        node: Any = generated
        for part in reference.removeprefix("#/").split("/"):
            assert part in node, reference
            node = node[part]


def test_every_action_the_namespaces_route_has_a_documented_reply() -> None:
    routed = {action for namespace in namespaces() for action in namespace.routes}
    assert routed == set(REPLIES)


@functools.cache
def _document_validators() -> list[jsonschema.Draft202012Validator]:
    committed = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    return [
        jsonschema.Draft202012Validator({**message["payload"], "components": committed["components"]})
        for message in committed["channels"]["roomcast"]["messages"].values()
    ]


def _accepted_by_the_document(frame: dict[str, Any]) -> None:
    """Some message of the committed document accepts the frame, as a client checking against its schemas would."""
    if any(validator.is_valid(frame) for validator in _document_validators()):
        return
    pytest.fail(f"no message of docs/asyncapi.yaml describes {frame}")


def _check(frame: dict[str, Any], action: str | None, seen: set[str]) -> None:
    """Validate one frame as the document describes it, and note what it exercised."""
    _accepted_by_the_document(frame)
    if frame["event"] == "ack":
        assert action is not None, frame
        if frame["ok"]:
            REPLIES[action].data.model_validate(frame["data"])
            seen.add(f"reply {action}")
        else:
            ErrorDetail.model_validate(frame["error"])
        return
    if frame["event"] == "error":
        ErrorDetail.model_validate(frame["data"])
        return
    if action is not None and frame["event"] == REPLIES[action].event:
        REPLIES[action].data.model_validate(frame["data"])
        seen.add(f"reply {action}")
        return
    check_event(frame["event"], frame["data"])
    if "offset" in frame:  # a session's event: only the recoverable ones carry one (documented as OFFSET)
        assert frame["event"] not in VOLATILE_EVENTS, frame
        assert re.fullmatch(OFFSET["pattern"], frame["offset"]), frame
        seen.add("offset")
    if frame["event"] in EVENTS:
        assert frame.get("namespace") == EVENTS[frame["event"]].namespace, frame
        seen.add(f"event {frame['event']}")


def test_every_frame_a_session_of_every_action_sends_is_as_documented(
    services: Services, gateway: RecordingGateway
) -> None:
    seen: set[str] = set()
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    cleo = Peer(gateway, "cleo-1", "cleo", "acme").connect()
    # A native session (recovery=1) hears everything with offsets, and its own `session` event.
    opening = lifecycle_event("connect", "dora-1", "dora", "acme")
    opening["requestContext"]["authorizer"]["recovery"] = "1"
    opening["queryStringParameters"] = {"token": "t", "recovery": "1"}
    deliver(opening)
    dora = Peer(gateway, "dora-1", "dora", "acme")

    def both(peer: Peer, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The action with an ackId, then without: the ack's data and the reply event."""
        with_ack = peer.act(action, data, ack_id="a")
        _check(with_ack, action, seen)
        assert with_ack["ok"], with_ack
        without = peer.raw(json.dumps({"action": action, **({"data": data} if data is not None else {})}))
        if REPLIES[action].event is None:
            # Nothing, unless repeating it failed (a second delete is a conflict): then an error event.
            assert without is None or without["event"] == "error", without
        else:
            assert without is not None, action
        if without is not None:
            _check(without, action, seen)
        result: dict[str, Any] = with_ack["data"]
        return result

    both(ana, "analytics:subscribe")
    conversation = both(ana, "conversation:create", {"subject": "Pricing"})["conversation"]["id"]
    for peer in (ana, ben):
        both(peer, "join:conversation", {"conversationId": conversation})
    message = both(ana, "message:send", {"conversationId": conversation, "content": "hello"})["id"]
    both(ana, "message:edit", {"conversationId": conversation, "messageId": message, "content": "hello!"})
    both(ben, "conversation:typing", {"conversationId": conversation, "isTyping": True})
    both(ana, "conversation:history", {"conversationId": conversation})
    both(ana, "conversation:update", {"conversationId": conversation, "status": "converted"})
    both(ana, "presence:list")
    both(ana, "analytics:request", {"period": "week"})
    both(ana, "ping")
    renewed = make_token({"userId": "ana", "companyId": "acme", "exp": int(time.time()) + 3600})
    both(ana, "auth:refresh", {"token": renewed})
    assert publish("Notify", {"companyId": "acme", "userId": "ana", "type": "t", "title": "Hi"})["status"] == "applied"
    notification = ana.ok("notification:list")["notifications"][0]["id"]
    both(ana, "notification:read", {"notificationId": notification})
    both(ana, "notification:all_read")
    both(ana, "notification:list", {"unreadOnly": False})
    for detail_type, detail in [
        ("CampaignStarted", {"companyId": "acme", "campaignId": "cp-1", "name": "Spring"}),
        ("ContactTagged", {"companyId": "acme", "conversationId": conversation, "contactId": "ct-1", "tag": "vip"}),
        ("Emit", {"companyId": "acme", "room": "company:acme", "event": "deal:won", "data": {"amount": 1}}),
    ]:
        assert publish(detail_type, detail)["status"] == "applied", detail_type
    ana.act("message:send", {"conversationId": conversation, "content": ""}, ack_id=None)
    both(ana, "message:delete", {"conversationId": conversation, "messageId": message})
    both(ana, "analytics:unsubscribe")
    both(ana, "leave:conversation", {"conversationId": conversation})
    cleo.disconnect()
    dan = Peer(gateway, "dan-1", "dan", "acme").connect()
    assert publish("Disconnect", {"companyId": "acme", "userId": "dan", "reason": "bye"})["status"] == "applied"

    for peer in (ana, ben, dan, dora):
        for frame in peer.received():
            _check(frame, None, seen)
    documented = {f"reply {action}" for action in REPLIES}
    documented |= {f"event {name}" for name in EVENTS} | {"offset"}
    assert documented - seen == set()


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_an_event_carrying_the_wrong_shape_is_caught(name: str) -> None:
    with pytest.raises(ValueError, match="validation error"):
        check_event(name, {"unexpected": True})
