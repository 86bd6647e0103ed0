"""The emitters for backend services (emitters/python, emitters/typescript): their contract is docs/asyncapi.yaml's
(generated, and current), they accept exactly what roomcast's own models accept, and a bad event raises before
anything is sent. tests/e2e/test_emitters.py runs both against the local stack."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pydantic import ValidationError

from roomcast_emitter import Emitter, FrameTooLarge, InvalidEvent, PublishFailed
from roomcast_emitter.emitter import checked
from roomcast_local.emitters import render
from shared.protocol.frames import LIST_ENVELOPE_BYTES, encoded_size
from shared.protocol.limits import limits
from shared.protocol.publishing import DETAIL_TYPES, NOTIFICATION_FRAME, Notify

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "emitters" / "python" / "src" / "roomcast_emitter"
LIMIT = limits().max_outbound_bytes


def test_the_committed_contract_modules_are_what_the_document_generates() -> None:
    for path, text in render().items():
        assert path.read_text(encoding="utf-8") == text, f"run `make emitters` and commit {path.relative_to(ROOT)}"


def test_every_detail_type_but_emit_is_a_typed_call_of_both_emitters() -> None:
    generated = render()
    python, typescript = (text for path, text in sorted(generated.items(), key=lambda item: item[0].suffix))
    for detail_type in DETAIL_TYPES:
        if detail_type == "Emit":
            continue
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in detail_type).lstrip("_")
        assert f"def {snake}(self, *," in python, detail_type
        assert f"{detail_type[0].lower()}{detail_type[1:]}(detail: Omit<{detail_type}Detail" in typescript, detail_type


def test_the_python_emitter_needs_no_roomcast_code() -> None:
    """A service with its own `shared` package installs it: it imports only itself, the standard library, boto3
    and jsonschema, and loads nothing of roomcast's."""
    allowed = {"roomcast_emitter", "boto3", "botocore", "jsonschema", "mypy_boto3_events", "__future__"}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in sys.stdlib_module_names, f"{path.name} imports {name}"
    code = "import json, sys, roomcast_emitter; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    loaded = json.loads(done.stdout)
    assert "shared" not in loaded
    assert "pydantic" not in loaded


def _emit(data: dict[str, Any], event: str = "deal:won", room: str = "user:ana") -> tuple[str, dict[str, Any]]:
    return "Emit", {"companyId": "acme", "room": room, "event": event, "data": data}


def _notify(**fields: Any) -> tuple[str, dict[str, Any]]:
    return "Notify", {"companyId": "acme", "userId": "ana", "type": "task", "title": "Call back", **fields}


# The frame rule's edges: an Emit's frame in the longest namespace, a stored notification read.
_EMIT_ROOM = LIMIT - encoded_size({"event": "deal:won", "namespace": "/notifications", "data": {"big": ""}})
_NOTIFY_ROOM = NOTIFICATION_FRAME.max_bytes() - encoded_size(
    NOTIFICATION_FRAME.measured({"userId": "ana", "type": "task", "title": "Call back", "data": {"big": ""}})
)
CASES: list[tuple[str, dict[str, Any]]] = [
    _emit({"dealId": "d-7"}),
    _emit({}, room="company:acme"),
    _emit({}, room="conversation:c-1"),
    _emit({}, room="analytics:acme"),
    _emit({}, room="team:7"),
    _emit({}, room="user:"),
    _emit({}, event="message:new"),
    _emit({}, event="pong"),
    _emit({}, event="dealWon"),
    _emit({"big": "x" * _EMIT_ROOM}),
    _emit({"big": "x" * (_EMIT_ROOM + 1)}),
    _emit({"big": "é" * (_EMIT_ROOM // 2)}),
    _emit({"big": "é" * (_EMIT_ROOM // 2 + 1)}),
    _notify(),
    _notify(body="b", data={"n": 1}),
    _notify(title=""),
    _notify(title="a\x00b"),
    _notify(title="tab\tand\nnewline"),
    _notify(body="x" * 4097),
    _notify(data={"big": "x" * _NOTIFY_ROOM}),
    _notify(data={"big": "x" * (_NOTIFY_ROOM + 1)}),
    _notify(extra=1),
    ("Notify", {"companyId": "acme", "type": "task", "title": "t"}),
    ("MessageReceived", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "content": "hola"}),
    ("MessageReceived", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "content": ""}),
    ("MessageReceived", {"companyId": "acme", "conversationId": "c 1", "contactId": "ct-1", "content": "x"}),
    ("MessageReceived", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "content": "x" * 16385}),
    ("CampaignStarted", {"companyId": "acme", "campaignId": "k-1", "name": "Spring"}),
    ("CampaignStarted", {"companyId": "a" * 129, "campaignId": "k-1", "name": "Spring"}),
    ("ContactTagged", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "tag": "vip"}),
    ("ContactTagged", {"companyId": "acme", "conversationId": "c-1", "contactId": "ct-1", "tag": "x" * 129}),
    ("LeadAssigned", {"companyId": "acme", "leadId": "l-1", "assigneeUserId": "ana"}),
    ("LeadAssigned", {"companyId": "acme", "leadId": "l-1", "assigneeUserId": "ana", "conversationId": "c-1"}),
    ("LeadAssigned", {"companyId": "acme", "leadId": "l-1"}),
    ("Disconnect", {"companyId": "acme", "userId": "ana"}),
    ("Disconnect", {"companyId": "acme", "userId": "ana", "reason": "account suspended"}),
    ("Disconnect", {"companyId": "acme", "userId": "ana", "reason": ""}),
    ("Disconnect", {"companyId": "acme", "userId": "ana", "reason": "x" * 257}),
    ("Disconnect", {"companyId": "acme"}),
    ("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": "2026-11-26T03:44:21Z"}),
    ("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": "2026-11-26T03:44:21+02:00"}),
    ("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": "2026-11-26T03:44:21"}),
    ("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": 1764128661}),
    ("RevokeTokens", {"companyId": "acme", "userId": "ana", "issuedBefore": "yesterday"}),
    ("NoSuchType", {"companyId": "acme"}),
]


def _roomcast_verdict(detail_type: str, detail: dict[str, Any]) -> str:
    model = DETAIL_TYPES.get(detail_type)
    if model is None:
        return "InvalidEvent"
    try:
        model.model_validate(detail)
    except ValidationError as error:
        return "FrameTooLarge" if "frame limit" in str(error) else "InvalidEvent"
    return "ok"


def _python_verdict(detail_type: str, detail: dict[str, Any]) -> str:
    try:
        checked(detail_type, detail)
    except InvalidEvent as error:
        return type(error).__name__
    return "ok"


def test_both_emitters_accept_exactly_what_roomcast_accepts() -> None:
    assert (ROOT / "emitters" / "typescript" / "dist" / "src" / "index.js").exists(), "run `make typescript` first"
    expected = [_roomcast_verdict(*case) for case in CASES]
    assert "ok" in expected
    assert {"InvalidEvent", "FrameTooLarge"} <= set(expected)
    assert [_python_verdict(*case) for case in CASES] == expected
    done = subprocess.run(  # noqa: S603 - our own script
        ["node", str(ROOT / "tests" / "emitter_verdicts.cjs")],  # noqa: S607 - node from PATH, as make runs it
        input=json.dumps(CASES),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(done.stdout) == expected


def test_the_notification_frame_rule_measures_the_stored_notification() -> None:
    """The rule is data the emitters read; it must say what roomcast stores, read, with its id and timestamps."""
    for detail in [
        {"companyId": "acme", "userId": "ana", "type": "t", "title": "T"},
        {"companyId": "acme", "userId": "ana", "type": "t", "title": "T", "body": "é" * 100, "data": {"a": [1, None]}},
    ]:
        notify = Notify.model_validate(detail)
        at = "2026-12-01T20:00:00.000Z"
        stored = notify.notification(at).model_copy(update={"read_at": at}).public()
        assert encoded_size(NOTIFICATION_FRAME.measured(notify.model_dump(by_alias=True))) == encoded_size(stored)
    assert NOTIFICATION_FRAME.max_bytes() == LIMIT - LIST_ENVELOPE_BYTES


@pytest.fixture
def events() -> Any:
    return boto3.client("events", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_a_bad_event_raises_before_anything_is_sent(events: Any) -> None:
    acme = Emitter(events).company("acme")
    bad_events: list[Callable[[], object]] = [
        lambda: acme.to("team:7").emit("deal:won", {}),
        lambda: acme.to("user:ana", "team:7").emit("deal:won", {}),
        lambda: acme.to("company:acme").emit("message:new", {}),
        lambda: acme.to().emit("deal:won", {}),
        lambda: acme.notify(user_id="ana", type="task", title=""),
        lambda: acme.message_received(conversation_id="c-1", contact_id="ct-1", content=""),
    ]
    with Stubber(events):  # no response queued: any call would raise UnStubbedResponseError
        for bad in bad_events:
            with pytest.raises(InvalidEvent):
                bad()
        with pytest.raises(FrameTooLarge):
            acme.to("user:ana").emit("deal:won", {"big": "x" * LIMIT})


def test_what_put_events_carries(events: Any) -> None:
    acme = Emitter(events, bus="crm-bus", source="crm.billing").company("acme")
    with Stubber(events) as stubber:
        stubber.add_response(
            "put_events",
            {"Entries": [{"EventId": "e-1"}, {"EventId": "e-2"}], "FailedEntryCount": 0},
            {
                "Entries": [
                    {
                        "Source": "crm.billing",
                        "DetailType": "Emit",
                        "EventBusName": "crm-bus",
                        "Detail": json.dumps(
                            {"room": room, "event": "deal:won", "data": {"id": 1}, "companyId": "acme"}
                        ),
                    }
                    for room in ("user:ana", "company:acme")
                ]
            },
        )
        notify = {"userId": "ana", "type": "task", "title": "Call back", "companyId": "acme"}
        stubber.add_response(
            "put_events",
            {"Entries": [{"EventId": "e-3"}], "FailedEntryCount": 0},
            {
                "Entries": [
                    {
                        "Source": "crm.billing",
                        "DetailType": "Notify",
                        "EventBusName": "crm-bus",
                        "Detail": json.dumps(notify),
                    }
                ]
            },
        )
        stubber.add_response(
            "put_events",
            {"Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "later"}], "FailedEntryCount": 1},
        )
        assert acme.to("user:ana").to("company:acme", "user:ana").emit("deal:won", {"id": 1}) == ["e-1", "e-2"]
        assert acme.notify(user_id="ana", type="task", title="Call back") == "e-3"
        with pytest.raises(PublishFailed, match="InternalFailure"):
            acme.campaign_started(campaign_id="k-1", name="Spring")
        stubber.assert_no_pending_responses()
