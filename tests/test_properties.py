"""Property-based: whatever frame a client sends and whatever detail a producer publishes, there is no
internal error, nothing reaches another company, and every acknowledged message is in history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomcast_local.testing import ManualClock, Peer, RecordingGateway, api, publish
from shared.protocol.publishing import DETAIL_TYPES
from shared.protocol.records import Conversation
from shared.wiring.services import Services

ROUTES = sorted(key for key in api().routes if not key.startswith("$"))
FIELDS = [
    "conversationId", "messageId", "content", "clientMessageId", "isTyping", "after", "before", "limit",
    "subject", "contactId", "assigneeUserId", "status", "notificationId", "unreadOnly", "cursor", "period",
    "token", "room", "event", "data", "userId", "companyId",
]  # fmt: skip
IDS = st.sampled_from(["acme-conv", "globex-conv", "missing", "", "a" * 129, "../x", "c#globex", "company:globex"])
TEXT = st.text(max_size=64) | st.sampled_from(["hi", "\x00", "\ud7ff", "\u202e", "x" * 20_000])
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT | IDS
VALUES = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
DATA = st.dictionaries(st.sampled_from(FIELDS), VALUES | IDS, max_size=5)
PLAUSIBLE = st.one_of(
    st.fixed_dictionaries(
        {"conversationId": st.just("acme-conv"), "content": st.text(min_size=1, max_size=64)},
        optional={"clientMessageId": st.text(alphabet="abc123-", min_size=1, max_size=8)},
    ).map(lambda data: ("message:send", data)),
    st.fixed_dictionaries({"conversationId": IDS, "content": TEXT}, optional={"clientMessageId": IDS}).map(
        lambda data: ("message:send", data)
    ),
    st.fixed_dictionaries({"conversationId": IDS}, optional={"after": IDS, "before": IDS, "limit": VALUES}).map(
        lambda data: ("conversation:history", data)
    ),
    st.fixed_dictionaries(
        {"conversationId": IDS}, optional={"status": TEXT, "assigneeUserId": IDS, "subject": TEXT}
    ).map(lambda data: ("conversation:update", data)),
    st.fixed_dictionaries({"conversationId": IDS, "messageId": IDS}, optional={"content": TEXT}).map(
        lambda data: (("message:edit" if "content" in data else "message:delete"), data)
    ),
    st.fixed_dictionaries({"conversationId": IDS}).flatmap(
        lambda data: st.sampled_from(["join:conversation", "leave:conversation", "conversation:typing"]).map(
            lambda action: (action, data)
        )
    ),
    st.fixed_dictionaries({}, optional={"subject": TEXT, "status": TEXT, "contactId": IDS}).map(
        lambda data: ("conversation:create", data)
    ),
    st.fixed_dictionaries({"notificationId": IDS}).map(lambda data: ("notification:read", data)),
    st.fixed_dictionaries({}, optional={"period": TEXT | st.sampled_from(["today", "week", "month"])}).map(
        lambda data: ("analytics:request", data)
    ),
).map(lambda pair: json.dumps({"action": pair[0], "data": pair[1], "ackId": "p"}))
FRAMES = (
    PLAUSIBLE
    | st.builds(
        lambda action, data, ack: json.dumps({"action": action, "data": data, **({"ackId": ack} if ack else {})}),
        st.sampled_from(ROUTES) | st.text(max_size=20),
        DATA | VALUES,
        st.none() | st.text(max_size=70),
    )
    | st.text(max_size=200)
)
DETAILS = st.fixed_dictionaries(
    {"companyId": st.just("acme")}, optional={field: VALUES | IDS for field in FIELDS if field != "companyId"}
)


@pytest.fixture
def world(services: Services, gateway: RecordingGateway, clock: ManualClock) -> dict[str, Any]:
    # Each reading of the clock a tenth of a second after the last: the rate limiter never gets in the way of
    # coverage.
    clock.set(datetime(2026, 11, 26, 3, 0, tzinfo=UTC), step=0.1)
    services.conversations.create(Conversation(id="acme-conv", companyId="acme", createdAt="t", updatedAt="t"))
    services.conversations.create(Conversation(id="globex-conv", companyId="globex", createdAt="t", updatedAt="t"))
    attacker = Peer(gateway, "attacker", "mallory", "acme").connect()
    attacker.ok("join:conversation", {"conversationId": "acme-conv"})
    victim = Peer(gateway, "victim", "mallory", "globex").connect()  # same user id, other company
    victim.ok("join:conversation", {"conversationId": "globex-conv"})
    victim.ok("analytics:subscribe")
    gateway.clear()
    return {"attacker": attacker, "victim": victim, "acked": []}


HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(body=FRAMES)
def test_any_frame_is_answered_without_internal_errors_or_leaks(
    world: dict[str, Any], services: Services, gateway: RecordingGateway, body: str
) -> None:
    attacker: Peer = world["attacker"]
    reply = attacker.raw(body)
    if reply is not None:
        text = json.dumps(reply)
        assert "Traceback" not in text
        assert '"internal"' not in text, reply
        if reply.get("event") == "ack" and reply.get("ok") and json.loads(body).get("action") == "message:send":
            world["acked"].append((json.loads(body)["data"]["conversationId"], reply["data"]["id"]))
    assert gateway.frames.get("victim", []) == []
    assert gateway.closed == []
    for conversation, message_id in world["acked"]:
        stored = services.conversations.get_message("acme", conversation, message_id)
        assert stored is not None


@HYPOTHESIS
@given(detail_type=st.sampled_from(sorted(DETAIL_TYPES)) | st.text(max_size=12), detail=DETAILS)
def test_any_published_detail_is_applied_or_dropped_never_leaked(
    world: dict[str, Any], gateway: RecordingGateway, detail_type: str, detail: dict[str, Any]
) -> None:
    result = publish(detail_type, detail)
    assert result["status"] in {"applied", "dropped", "unrouted"}
    assert gateway.frames.get("victim", []) == []
