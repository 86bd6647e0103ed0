"""Flooding, expired tokens, origins and odd text: each answered with its code, closing when it must."""

from __future__ import annotations

import base64
import time
from typing import Any
from unittest.mock import ANY

import pytest

from roomcast_local.testing import ManualClock, Peer, RecordingGateway, deliver, message_event
from shared.protocol.identity import origin_allowed
from shared.wiring import services as runtime
from shared.wiring.services import Services, build_services
from shared.wiring.settings import settings
from tests.conftest import make_token


@pytest.fixture(autouse=True)
def frozen(frozen_clock: ManualClock) -> None:
    """Every test here starts at one instant, and time moves only as it says (`clock.advance`)."""


def codes(peer: Peer, count: int, action: str = "ping") -> list[str]:
    replies = [peer.act(action, ack_id=str(index)) for index in range(count)]
    return ["ok" if reply["ok"] else reply["error"]["code"] for reply in replies]


def test_a_burst_of_40_passes_and_the_41st_is_rate_limited(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    assert codes(peer, 41) == ["ok"] * 40 + ["rate_limited"]
    clock.advance(0.05)  # one interval refills one action
    assert codes(peer, 2) == ["ok", "rate_limited"]
    clock.advance(2)  # a full bucket again
    assert codes(peer, 40) == ["ok"] * 40


def test_the_sustained_rate_is_20_per_second(services: Services, gateway: RecordingGateway, clock: ManualClock) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    assert codes(peer, 40) == ["ok"] * 40
    outcomes = []
    for _ in range(40):  # two seconds at 20/s
        clock.advance(0.05)
        outcomes += codes(peer, 1)
    assert outcomes == ["ok"] * 40


def test_every_namespace_and_garbage_count_against_the_same_budget(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    for _ in range(10):
        peer.raw("garbage")
        peer.act("notification:list")
        peer.act("analytics:request")
        peer.act("presence:list")
    assert peer.act("ping")["error"]["code"] == "rate_limited"
    reply = peer.raw("garbage")
    assert reply is not None
    assert reply["data"]["code"] == "rate_limited"


def test_the_budget_is_shared_by_every_lambda_container(
    services: Services, gateway: RecordingGateway, clock: ManualClock, session: object
) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    assert codes(peer, 20) == ["ok"] * 20
    runtime.install(
        build_services(settings(), gateway=gateway, deferrer=services.deferrer, clock=clock)
    )  # another container
    assert codes(peer, 21) == ["ok"] * 20 + ["rate_limited"]


def test_a_connection_that_keeps_flooding_is_told_and_closed(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    codes(peer, 40)
    assert codes(peer, 19) == ["rate_limited"] * 19
    assert gateway.closed == []
    assert peer.raw('{"action": "ping", "ackId": "last"}') is None  # the 20th refusal in a row
    assert gateway.closed == ["p"]
    (told,) = peer.received("ack")
    assert told == {"event": "ack", "ackId": "last", "ok": False, "error": told["error"]}
    assert told["error"]["code"] == "rate_limited"


def test_an_admitted_action_resets_the_strikes(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    codes(peer, 40)
    for _ in range(5):
        assert codes(peer, 15) == ["rate_limited"] * 15
        clock.advance(0.05)
        assert codes(peer, 1) == ["ok"]
    assert gateway.closed == []


def test_after_exp_any_action_is_token_expired_and_closes(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    exp = int(clock.now().timestamp()) + 60
    peer = Peer(gateway, "p", "ana", "acme", exp=exp).connect()
    assert codes(peer, 1) == ["ok"]
    clock.advance(60 + 9)  # within the leeway: still accepted
    assert codes(peer, 1) == ["ok"]
    clock.advance(1)
    assert peer.raw('{"action": "presence:list", "ackId": "x"}') is None
    assert gateway.closed == ["p"]
    (told,) = peer.received("ack")
    assert told["error"]["code"] == "token_expired"


def test_auth_refresh_extends_the_connection_for_the_same_identity(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    start = int(clock.now().timestamp())
    peer = Peer(gateway, "p", "ana", "acme", exp=start + 60).connect()
    later = int(time.time()) + 3600  # PyJWT checks the new token against the real clock
    renewed = make_token({"userId": "ana", "companyId": "acme", "exp": later})
    assert peer.ok("auth:refresh", {"token": renewed}) == {"exp": later}
    clock.advance(600)
    assert codes(peer, 1) == ["ok"]
    assert gateway.closed == []


@pytest.mark.parametrize(
    ("claims", "secret", "code"),
    [
        ({"userId": "ben", "companyId": "acme"}, None, "forbidden"),
        ({"userId": "ana", "companyId": "globex"}, None, "forbidden"),
        ({"userId": "ana", "companyId": "acme"}, "not-the-secret-not-the-secret-not", "unauthorized"),
        ({"userId": "ana", "companyId": "acme", "exp": 1}, None, "unauthorized"),
    ],
)
def test_auth_refresh_cannot_change_identity_or_use_a_bad_token(
    services: Services,
    gateway: RecordingGateway,
    clock: ManualClock,
    claims: dict[str, object],
    secret: str | None,
    code: str,
) -> None:
    start = int(clock.now().timestamp())
    peer = Peer(gateway, "p", "ana", "acme", exp=start + 60).connect()
    token = make_token(claims) if secret is None else make_token(claims, secret=secret)
    assert peer.error("auth:refresh", {"token": token}) == code
    clock.advance(75)
    peer.raw('{"action": "ping"}')
    assert gateway.closed == ["p"]  # the connection still ends at its first exp


def test_auth_refresh_after_expiry_is_too_late(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    start = int(clock.now().timestamp())
    peer = Peer(gateway, "p", "ana", "acme", exp=start + 60).connect()
    clock.advance(120)
    renewed = make_token({"userId": "ana", "companyId": "acme", "exp": int(time.time()) + 3600})
    assert peer.raw(f'{{"action": "auth:refresh", "data": {{"token": "{renewed}"}}, "ackId": "r"}}') is None
    assert gateway.closed == ["p"]
    assert peer.received("ack")[0]["error"]["code"] == "token_expired"


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        (None, ("https://app.acme.example",), True),
        ("https://app.acme.example", ("https://app.acme.example",), True),
        ("https://evil.example", ("https://app.acme.example",), False),
        ("https://app.acme.example.evil.example", ("https://app.acme.example",), False),
        ("http://localhost:5173", ("http://localhost:*",), True),
        ("http://localhost:5173.evil.example", ("http://localhost:*",), False),
        ("http://localhost.evil.example:80", ("http://localhost:*",), False),
        ("https://anything.example", ("*",), True),
    ],
)
def test_origins(origin: str | None, allowed: tuple[str, ...], expected: bool) -> None:
    assert origin_allowed(origin, allowed) is expected


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("nul \x00 inside", "bad_request"),
        ("bell \x07", "bad_request"),
        ("escape \x1b[31m red", "bad_request"),
        ("delete \x7f", "bad_request"),
        ("tabs\tand\nnewlines\r\n", "ok"),
        ("right-to-left \u202e mark", "ok"),
        ("zero\u200bwidth", "ok"),
        ("emoji 👋🏽 and 日本語", "ok"),
    ],
)
def test_odd_text(services: Services, gateway: RecordingGateway, content: str, code: str) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    conversation = peer.ok("conversation:create", {})["conversation"]["id"]
    reply = peer.act("message:send", {"conversationId": conversation, "content": content})
    assert ("ok" if reply["ok"] else reply["error"]["code"]) == code
    if code == "ok":
        (stored,) = peer.ok("conversation:history", {"conversationId": conversation})["messages"]
        assert stored["content"] == content


@pytest.mark.parametrize(
    "data",
    [
        {"conversationId": "c", "content": "x", "limit": 10**40},
        {"conversationId": "c" * 10_000},
        {"conversationId": {"nested": {"deeper": ["x"]}}},
        {"conversationId": ["c"]},
        {"conversationId": None},
        {"conversationId": True},
        {"conversationId": "c\u0000"},
        {"conversationId": "../../etc/passwd"},
        {"conversationId": "c#room#globex"},
    ],
)
def test_hostile_ids_are_bad_requests(services: Services, gateway: RecordingGateway, data: dict[str, object]) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()
    assert peer.error("conversation:history", data) == "bad_request"


def test_a_base64_frame_that_is_not_utf8_is_a_counted_bad_request(
    services: Services, gateway: RecordingGateway, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    peer = Peer(gateway, "p", "ana", "acme").connect()

    def binary(payload: bytes) -> dict[str, Any] | None:
        event = message_event("p", "ana", "acme", "")
        event["body"] = base64.b64encode(payload).decode()
        event["isBase64Encoded"] = True
        return deliver(event)

    replies = [binary(b"\xff\xfe{not utf-8}") for _ in range(40)]
    assert {reply["data"]["code"] for reply in replies if reply} == {"bad_request"}
    assert binary(b"\xc3\x28") == {
        "event": "error",
        "data": {"code": "rate_limited", "message": "more than 20 actions per second: slow down"},
    }
    assert "Traceback" not in caplog.text
    clock.advance(2)
    assert binary(b'{"action":"ping","ackId":"1"}') == {
        "event": "ack",
        "ackId": "1",
        "ok": True,
        "data": {"timestamp": ANY},
    }
    assert peer.ok("ping")
