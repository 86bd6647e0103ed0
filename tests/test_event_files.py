"""Every file in events/ invoked in-process on the handler template.yaml routes it to, as
`sam local invoke -e` would: the files stay true for developers who run them in SAM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from roomcast_local.eventbridge import matches, rules
from roomcast_local.template import load_template, resources
from roomcast_local.testing import EVENTS, RecordingGateway, api, deliver, invoke, load_event
from shared.protocol.publishing import DETAIL_TYPES
from shared.protocol.records import Conversation, Message, Notification, SenderType
from shared.wiring.services import Services

CONNECTION = "Fv3sZeKkoAMCL4Q="
MESSAGE = "000000000001a1b2c3d4e5f60718"
NOTIFICATION = "0193f1a2b3c4bb11bb22cc33dd44ee55ff66"
EXPECTED_REPLY: dict[str, tuple[str, bool] | None] = {
    "default": ("ack", False),
    "conversation-typing": None,
}
FILES = sorted(path.stem for path in EVENTS.glob("*.json"))
BUS_FILES = [name for name in FILES if name.startswith("bus-")]
SCHEDULE_FILES = [name for name in FILES if name.startswith("schedule-")]
QUEUE_FILES = [name for name in FILES if name.startswith("queue-")]
ROUTE_FILES = [name for name in FILES if name not in {*BUS_FILES, *SCHEDULE_FILES, *QUEUE_FILES, "authorizer"}]


@pytest.fixture
def seeded(services: Services) -> Services:
    services.conversations.create(Conversation(id="c-1", companyId="acme", createdAt="t", updatedAt="t"))
    services.conversations.add_message(
        "acme",
        "c-1",
        lambda seq: Message(
            id=MESSAGE,
            seq=seq,
            conversationId="c-1",
            content="Hello",
            senderType=SenderType.AGENT,
            fromUserId="u-1",
            timestamp="t",
        ),
        sender_key=None,
    )
    services.notifications.add(
        "acme",
        Notification(id=NOTIFICATION, userId="u-1", type="task", title="Call back", createdAt="t"),
        source_event="seed",
    )
    deliver(load_event("connect"))
    return services


def test_there_is_an_event_for_every_route_and_the_authorizer() -> None:
    route_keys = {load_event(name)["requestContext"]["routeKey"] for name in ROUTE_FILES}
    assert route_keys == set(api().routes)
    assert {load_event(name)["detail-type"] for name in BUS_FILES} == set(DETAIL_TYPES)
    assert "authorizer" in FILES


def test_the_authorizer_event_is_allowed(aws: None) -> None:
    policy = invoke(api().handlers[str(api().authorizer_function)], load_event("authorizer"))
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert policy["context"]["companyId"] == "acme"


@pytest.mark.parametrize("name", [name for name in ROUTE_FILES if name not in {"connect", "disconnect"}])
def test_each_message_event_gets_its_expected_answer(seeded: Services, name: str) -> None:
    event = load_event(name)
    assert api().select(event["body"]) == event["requestContext"]["routeKey"]
    reply = deliver(event)
    expected = EXPECTED_REPLY.get(name, ("ack", True))
    if expected is None:
        assert reply is None
    else:
        assert reply is not None
        assert (reply["event"], reply["ok"]) == expected, reply
        assert reply["ackId"] == json.loads(event["body"])["ackId"]


def test_disconnect_event_removes_the_connection(seeded: Services, gateway: RecordingGateway) -> None:
    assert seeded.connections.get(CONNECTION) is not None
    deliver(load_event("disconnect"))
    assert seeded.connections.get(CONNECTION) is None


@pytest.mark.parametrize("name", BUS_FILES)
def test_each_bus_event_is_routed_by_the_template_and_applied(seeded: Services, name: str) -> None:
    event = load_event(name)
    (target,) = {rule.function for rule in rules(load_template()) if matches(rule.pattern, event)}
    assert invoke(api().handlers[target], event) == {"status": "applied"}


SCHEDULED = {
    logical: body["Properties"]["Handler"]
    for logical, body in resources(load_template(), "AWS::Serverless::Function").items()
    if any(event["Type"] == "Schedule" for event in body["Properties"].get("Events", {}).values())
}


def _function_of_schedule_file(name: str) -> str:
    """schedule-analytics-refresh -> AnalyticsRefreshFunction"""
    return "".join(part.title() for part in name.removeprefix("schedule-").split("-")) + "Function"


def test_there_is_an_event_for_every_scheduled_function() -> None:
    assert {_function_of_schedule_file(name) for name in SCHEDULE_FILES} == set(SCHEDULED)


@pytest.mark.parametrize("name", SCHEDULE_FILES)
def test_each_scheduled_event_runs_its_function(seeded: Services, name: str) -> None:
    result = invoke(SCHEDULED[_function_of_schedule_file(name)], load_event(name))
    # The heartbeat's scheduled run starts its shards (decision 0093); they ping.
    assert result in ({"companies": 0}, {"swept": 0}, {"shards": seeded.config.hour_index_shards})


QUEUED = {
    logical: body["Properties"]["Handler"]
    for logical, body in resources(load_template(), "AWS::Serverless::Function").items()
    if any(event["Type"] == "SQS" for event in body["Properties"].get("Events", {}).values())
}


def test_there_is_an_event_for_every_function_a_queue_feeds() -> None:
    """queue-delayed -> DelayedFunction"""
    assert {name.removeprefix("queue-").title() + "Function" for name in QUEUE_FILES} == set(QUEUED)


def test_the_delayed_event_ends_a_grace_that_is_not_running_without_an_announcement(
    seeded: Services, gateway: RecordingGateway
) -> None:
    before = gateway.calls
    assert invoke(QUEUED["DelayedFunction"], load_event("queue-delayed")) == {"batchItemFailures": []}
    assert gateway.calls == before


def test_events_are_shaped_as_api_gateway_sends_them() -> None:
    for name in ROUTE_FILES:
        event: dict[str, Any] = json.loads(Path(EVENTS / f"{name}.json").read_text())
        context = event["requestContext"]
        for key in ("connectionId", "domainName", "stage", "apiId", "requestId", "connectedAt", "identity"):
            assert key in context, (name, key)
        assert context["eventType"] in {"CONNECT", "MESSAGE", "DISCONNECT"}
        assert "userId" in context["authorizer"]
