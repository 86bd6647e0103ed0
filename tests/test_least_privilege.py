"""Every AWS action each function makes, in a scenario touching every route and detail-type, is one its
template policy grants: a missing permission here is an AccessDenied in AWS."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from roomcast_local import testing
from roomcast_local.template import load_template, resources
from roomcast_local.testing import (
    ManualClock,
    Peer,
    QueuedDeferrer,
    QueuedDelayer,
    QueuedShards,
    RecordingGateway,
    SocketIoPeer,
    invoke,
    publish,
    run_delayed,
)
from shared.delivery.deferred import AnyTask
from shared.delivery.delayed import DelayedTask
from shared.delivery.heartbeat import HeartbeatShard
from shared.wiring import services as runtime
from shared.wiring.services import build_services
from shared.wiring.settings import settings
from tests.conftest import TABLE_NAMES, settle

TEMPLATE = load_template()
FUNCTIONS = resources(TEMPLATE, "AWS::Serverless::Function")
LOGICAL = {name: logical for logical, name in TABLE_NAMES.items()}


class RecordingGatewayWithActions(RecordingGateway):
    def __init__(self, recorder: ActionRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def post(self, connection_id: str, data: bytes) -> Any:
        self.recorder.record("execute-api:ManageConnections", "POST")
        return super().post(connection_id, data)

    def close(self, connection_id: str) -> None:
        self.recorder.record("execute-api:ManageConnections", "DELETE")
        super().close(connection_id)


class RecordingDeferrer(QueuedDeferrer):
    def __init__(self, recorder: ActionRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def defer(self, task: AnyTask) -> None:
        self.recorder.record("lambda:InvokeFunction", "*")
        super().defer(task)


class RecordingDelayer(QueuedDelayer):
    def __init__(self, recorder: ActionRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def delay(self, task: DelayedTask, seconds: int) -> None:
        self.recorder.record("sqs:SendMessage", "DelayQueue")
        super().delay(task, seconds)


class RecordingShards(QueuedShards):
    def __init__(self, recorder: ActionRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def start(self, shard: HeartbeatShard) -> None:
        self.recorder.record("lambda:InvokeFunction", "*")
        super().start(shard)


class ActionRecorder:
    """(IAM action, resource) per function, from boto3's parameters and the @connections stand-in."""

    def __init__(self) -> None:
        self.current = "test"
        self.used: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.gateway = RecordingGatewayWithActions(self)
        self.deferrer = RecordingDeferrer(self)
        self.delayer = RecordingDelayer(self)
        self.shards = RecordingShards(self)

    def record(self, action: str, resource: str) -> None:
        self.used[self.current].add((action, resource))

    def boto(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        if operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                iam = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(kind, "ConditionCheckItem")
                self.record(f"dynamodb:{iam}", LOGICAL[body["TableName"]])
        elif operation in ("BatchWriteItem", "BatchGetItem"):
            for table in params["RequestItems"]:
                self.record(f"dynamodb:{operation}", LOGICAL[table])
        elif "TableName" in params:
            resource = LOGICAL[params["TableName"]]
            if "IndexName" in params:
                resource += f"/index/{params['IndexName']}"
            self.record(f"dynamodb:{operation}", resource)
        else:
            self.record(f"{model.service_model.endpoint_prefix}:{operation}", "*")


def granted(function: str) -> set[tuple[str, str]]:
    grants = set()
    for policy in FUNCTIONS[function]["Properties"].get("Policies", []):
        for statement in policy["Statement"]:
            # A statement under a condition (`!If [Cond, statement, !Ref AWS::NoValue]`) may be granted.
            statement = statement["Fn::If"][1] if "Fn::If" in statement else statement  # noqa: PLW2901
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for target in targets:
                for action in actions:
                    grants.add((action, _resource(target)))
    return grants


def _resource(target: Any) -> str:
    if "Fn::GetAtt" in target:
        return str(target["Fn::GetAtt"][0])
    text = str(target.get("Fn::Sub", target))
    if "/@connections/" in text:
        return text.rsplit("}/", maxsplit=1)[-1].split("/", maxsplit=1)[0]  # the HTTP method
    if ".Arn}/index/" in text:
        table, index = text.split("${", 1)[1].split(".Arn}/index/")
        return f"{table}/index/{index}"
    return "*"


@pytest.fixture
def recorder(aws: None, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[ActionRecorder]:
    recorder = ActionRecorder()
    session = boto3.session.Session()
    session.events.register("before-parameter-build", recorder.boto)
    # With a presence grace, every close that leaves a user without a connection sends its end to the queue.
    monkeypatch.setenv("PRESENCE_GRACE_SECONDS", "30")
    # Past one user online, presence changes go into digests: their writes and their flush's too.
    monkeypatch.setenv("PRESENCE_DIGEST_THRESHOLD", "1")
    settings.cache_clear()
    runtime.install(
        build_services(
            settings(),
            gateway=recorder.gateway,
            session=session,
            deferrer=recorder.deferrer,
            delayer=recorder.delayer,
            clock=clock,
            shard_starter=recorder.shards,
        )
    )

    real_deliver = testing.deliver

    def deliver(event: dict[str, Any]) -> dict[str, Any] | None:
        recorder.current = testing.api().routes[event["requestContext"]["routeKey"]].function
        return real_deliver(event)

    def invoke_as(path: str, event: dict[str, Any]) -> Any:
        recorder.current = next(name for name, body in FUNCTIONS.items() if body["Properties"]["Handler"] == path)
        return invoke(path, event)

    monkeypatch.setattr(testing, "deliver", deliver)
    monkeypatch.setattr(testing, "invoke", invoke_as)
    yield recorder
    runtime.install(None)
    settings.cache_clear()


def test_every_action_a_function_makes_is_granted_to_it(recorder: ActionRecorder, clock: ManualClock) -> None:
    gateway = recorder.gateway
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    viewer = Peer(gateway, "boss-1", "boss", "acme").connect()
    viewer.ok("analytics:subscribe")
    conversation = ana.ok("conversation:create", {"subject": "s"})["conversation"]["id"]
    ben.ok("join:conversation", {"conversationId": conversation})
    publish("MessageReceived", {"companyId": "acme", "conversationId": conversation, "contactId": "c", "content": "q"})
    publish("MessageReceived", {"companyId": "acme", "conversationId": "new-1", "contactId": "c", "content": "q"})
    sent = ana.ok("message:send", {"conversationId": conversation, "content": "a", "clientMessageId": "m1"})
    ana.ok("message:send", {"conversationId": conversation, "content": "a", "clientMessageId": "m1"})
    ref = {"conversationId": conversation, "messageId": sent["id"]}
    ana.ok("message:edit", {**ref, "content": "b"})
    ben.ok("conversation:typing", {"conversationId": conversation})
    ben.ok("conversation:history", {"conversationId": conversation})
    ben.ok("conversation:update", {"conversationId": conversation, "status": "converted"})
    ben.ok("presence:list")
    ana.ok("message:delete", ref)
    publish("Notify", {"companyId": "acme", "userId": "ana", "type": "t", "title": "t"})
    publish("LeadAssigned", {"companyId": "acme", "leadId": "l", "assigneeUserId": "ana"})
    publish("Emit", {"companyId": "acme", "room": f"conversation:{conversation}", "event": "a:b", "data": {}})
    publish("CampaignStarted", {"companyId": "acme", "campaignId": "k", "name": "n"})
    publish("ContactTagged", {"companyId": "acme", "conversationId": conversation, "contactId": "c", "tag": "t"})
    first = ana.ok("notification:list")["notifications"][0]["id"]
    ana.ok("notification:read", {"notificationId": first})
    ana.ok("notification:all_read")
    viewer.ok("analytics:request", {"period": "month"})
    ana.ok("ping")
    ana.raw("not json")
    ana.error("auth:refresh", {"token": "nope"})
    ben.ok("leave:conversation", {"conversationId": conversation})
    ben.ok("join:conversation", {"conversationId": conversation})
    gateway.gone.add("ben-1")
    settle(clock)
    ana.ok("message:send", {"conversationId": conversation, "content": "gone?"})
    viewer.ok("analytics:unsubscribe")
    recorder.current = "AnalyticsRefreshFunction"
    invoke("handlers.analytics.push_figures", {})
    from datetime import UTC, datetime, timedelta

    from shared.protocol.identity import Identity

    recorder.current = "test"  # setting the scene, not a function's own call
    runtime.services().connections.open(
        "stale", Identity(userId="ghost", companyId="acme"), datetime.now(UTC) - timedelta(hours=5)
    )
    recorder.current = "SweepFunction"
    assert invoke("handlers.sweep.handler", {}) == {"swept": 1}
    socketio_scenario(recorder)
    recovery_scenario(recorder, conversation)
    ana.disconnect()
    run_delayed()
    Peer(gateway, "dan-1", "dan", "acme").connect()
    SocketIoPeer(gateway, "dan-2", "dan", "acme").connect().send("40/conversations,")
    publish("Disconnect", {"companyId": "acme", "userId": "dan", "reason": "r"})
    Peer(gateway, "eve-1", "eve", "acme").connect()
    publish("RevokeTokens", {"companyId": "acme", "userId": "eve", "issuedBefore": "2026-11-26T03:44:21Z"})

    assert set(recorder.used) >= {
        "HeartbeatFunction",
        "ConnectFunction",
        "DisconnectFunction",
        "DefaultFunction",
        "ConversationsFunction",
        "NotificationsFunction",
        "AnalyticsFunction",
        "AnalyticsRefreshFunction",
        "BackendEventsFunction",
        "SweepFunction",
        "DeferredFunction",
        "DelayedFunction",
    }
    missing = {
        function: sorted(used - granted(function))
        for function, used in recorder.used.items()
        if function != "test" and used - granted(function)
    }
    assert missing == {}


def socketio_scenario(recorder: ActionRecorder) -> None:
    """Every action again from a Socket.IO connection: all of them reach $default, whose grants must cover them."""
    cat = SocketIoPeer(recorder.gateway, "sio-1", "cat", "acme").connect()
    for namespace in ("/conversations", "/notifications", "/analytics", "/"):
        cat.send(f"40{namespace},")

    def ok(namespace: str, action: str, argument: Any = None) -> Any:
        payload = [action] if argument is None else [action, argument]
        answer = cat.send(f"42{namespace},1{json.dumps(payload)}")
        assert answer is not None
        result = json.loads(answer[answer.index("[") :])[0]
        assert result["ok"] is True, (action, result)
        return result["data"]

    conversation = ok("/conversations", "conversation:create", {"subject": "s"})["conversation"]["id"]
    ok("/conversations", "join:conversation", conversation)
    sent = ok("/conversations", "message:send", {"conversationId": conversation, "content": "a"})
    ref = {"conversationId": conversation, "messageId": sent["id"]}
    ok("/conversations", "message:edit", {**ref, "content": "b"})
    ok("/conversations", "conversation:typing", conversation)
    ok("/conversations", "conversation:history", {"conversationId": conversation})
    ok("/conversations", "conversation:update", {"conversationId": conversation, "status": "open"})
    ok("/conversations", "presence:list")
    ok("/conversations", "message:delete", ref)
    ok("/conversations", "leave:conversation", conversation)
    publish("Notify", {"companyId": "acme", "userId": "cat", "type": "t", "title": "t"})
    first = ok("/notifications", "notification:list")["notifications"][0]["id"]
    ok("/notifications", "notification:read", first)
    ok("/notifications", "notification:all_read")
    ok("/analytics", "analytics:subscribe")
    ok("/analytics", "analytics:request", "week")
    ok("/analytics", "analytics:unsubscribe")
    ok("/", "ping")
    cat.send("3")
    cat.send("not socket.io")
    cat.send("41/analytics,")
    recorder.current = "HeartbeatFunction"
    invoke("handlers.heartbeat.handler", {})
    for shard in recorder.shards.take():
        invoke("handlers.heartbeat.handler", shard.model_dump())
    cat.send("1")
    cat.disconnect()


def recovery_scenario(recorder: ActionRecorder, conversation: str) -> None:
    """Sessions (recovery=1): Socket.IO ones opened, dropped, recovered and ended; a native one joining
    rooms through the namespace functions, dropped, recovered and closed with 1000."""

    def recovering(event: dict[str, Any]) -> dict[str, Any]:
        event["requestContext"]["authorizer"]["recovery"] = "1"
        return event

    class Recovering(SocketIoPeer):
        def _socketio(self, event: dict[str, Any]) -> dict[str, Any]:
            return recovering(super()._socketio(event))

    first = Recovering(recorder.gateway, "rec-1", "rex", "acme").connect()
    first.send("40/conversations,")
    first.send(f'42/conversations,1["join:conversation","{conversation}"]')
    pid = json.loads(next(text for text in first.pushed() if text.startswith("40/conversations,"))[17:])["pid"]
    first.disconnect()
    publish("Emit", {"companyId": "acme", "room": f"conversation:{conversation}", "event": "a:b", "data": {}})
    second = Recovering(recorder.gateway, "rec-2", "rex", "acme").connect()
    second.send(f'40/conversations,{{"pid":"{pid}","offset":"1"}}')
    second.send("41/conversations,")
    second.disconnect()

    def native(kind: str, connection_id: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        event = recovering(testing.lifecycle_event(kind, connection_id, "nia", "acme"))
        if query is not None:
            event["queryStringParameters"] = {"token": "t", "recovery": "1", **query}
        return event

    testing.deliver(native("connect", "nat-1", {}))
    frames = recorder.gateway.events("nat-1", "session")
    for action, data in (("join:conversation", {"conversationId": conversation}), ("analytics:subscribe", {})):
        event = recovering(
            testing.message_event("nat-1", "nia", "acme", {"action": action, "data": data, "ackId": "1"})
        )
        testing.deliver(event)
    closing = native("disconnect", "nat-1")
    closing["requestContext"]["disconnectStatusCode"] = 1001
    testing.deliver(closing)
    session = {"session": frames[0]["data"]["sessionId"], "offset": frames[0]["offset"]}
    testing.deliver(native("connect", "nat-2", session))
    closing = native("disconnect", "nat-2")
    closing["requestContext"]["disconnectStatusCode"] = 1000
    testing.deliver(closing)
