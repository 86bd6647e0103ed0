"""Simulated clients: each drives the handlers with API Gateway events, routed as template.yaml routes them."""

from __future__ import annotations

import json
import uuid
from functools import cache
from typing import Any

from roomcast_local.eventbridge import matches, rules
from roomcast_local.invoke import invoke
from roomcast_local.template import WebSocketApi, load_template, websocket_api
from shared.wiring import services as runtime
from tests.conftest import lifecycle_event, message_event
from tests.fakes import QueuedDeferrer, RecordingGateway


@cache
def api() -> WebSocketApi:
    return websocket_api(load_template())


DEFERRED_HANDLER = "handlers.deferred.handler"


def deliver(event: dict[str, Any]) -> dict[str, Any] | None:
    """Invoke the function the event's route key maps to; return the frame a two-way route sends back.
    Then run what it handed off, as Lambda would after the reply."""
    route_key = event["requestContext"]["routeKey"]
    response = invoke(api().handler_of(route_key), event)
    assert response["statusCode"] == 200, response
    if deferrer().auto:
        run_deferred()
    body = response.get("body")
    return None if body is None else dict(json.loads(body))


def deferrer() -> QueuedDeferrer:
    queued = runtime.services().deferrer
    assert isinstance(queued, QueuedDeferrer)
    return queued


def run_deferred() -> int:
    """Run queued tasks, and the tasks they hand off in turn, until none is left; returns how many ran."""
    ran = 0
    while tasks := deferrer().take():
        for task in tasks:
            invoke(DEFERRED_HANDLER, task.model_dump(by_alias=True, mode="json"))
            ran += 1
    return ran


class Peer:
    """One WebSocket connection of one user."""

    def __init__(
        self, gateway: RecordingGateway, connection_id: str, user_id: str, company_id: str, exp: int | None = None
    ) -> None:
        self.gateway = gateway
        self.connection_id = connection_id
        self.user_id = user_id
        self.company_id = company_id
        self.exp = exp

    def connect(self) -> Peer:
        deliver(lifecycle_event("connect", self.connection_id, self.user_id, self.company_id, self.exp))
        return self

    def disconnect(self) -> None:
        deliver(lifecycle_event("disconnect", self.connection_id, self.user_id, self.company_id, self.exp))

    def raw(self, body: str) -> dict[str, Any] | None:
        event = message_event(self.connection_id, self.user_id, self.company_id, body, self.exp)
        event["requestContext"]["routeKey"] = api().select(body)
        return deliver(event)

    def act(self, action: str, data: dict[str, Any] | None = None, ack_id: str | None = "1") -> dict[str, Any]:
        """Send an action and return its one reply frame."""
        frame: dict[str, Any] = {"action": action}
        if data is not None:
            frame["data"] = data
        if ack_id is not None:
            frame["ackId"] = ack_id
        reply = self.raw(json.dumps(frame, ensure_ascii=False))
        assert reply is not None, f"{action} sent no reply"
        return reply

    def ok(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send an action with an ackId and return the ack's data, failing on an error ack."""
        reply = self.act(action, data, ack_id="ok")
        assert (reply["event"], reply["ok"]) == ("ack", True), reply
        result: dict[str, Any] = reply["data"]
        return result

    def error(self, action: str, data: dict[str, Any] | None = None) -> str:
        """Send an action that must fail; return its error code."""
        reply = self.act(action, data, ack_id="err")
        assert (reply["event"], reply["ok"]) == ("ack", False), reply
        code: str = reply["error"]["code"]
        return code

    def received(self, event: str | None = None) -> list[dict[str, Any]]:
        return self.gateway.events(self.connection_id, event)


def bus_event(detail_type: str, detail: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """An EventBridge event as the bus delivers it to a target."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "crm.test",
        "account": "123456789012",
        "time": "2026-11-26T03:44:21Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def publish(detail_type: str, detail: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """Deliver an event to the function the template's rules route its detail-type to."""
    event = bus_event(detail_type, detail, event_id)
    targets = {rule.function for rule in rules(load_template()) if matches(rule.pattern, event)}
    assert len(targets) <= 1, targets
    if not targets:
        return {"status": "unrouted"}
    result: dict[str, Any] = invoke(api().handlers[targets.pop()], event)
    if deferrer().auto:
        run_deferred()
    return result


class SocketIoPeer(Peer):
    """A connection that speaks Socket.IO: its handshake query carried EIO=4, so the authorizer's context says so."""

    def _socketio(self, event: dict[str, Any]) -> dict[str, Any]:
        event["requestContext"]["authorizer"]["codec"] = "socketio"
        return event

    def connect(self) -> SocketIoPeer:
        deliver(self._socketio(lifecycle_event("connect", self.connection_id, self.user_id, self.company_id, self.exp)))
        return self

    def disconnect(self) -> None:
        deliver(
            self._socketio(lifecycle_event("disconnect", self.connection_id, self.user_id, self.company_id, self.exp))
        )

    def send(self, text: str) -> str | None:
        """One Socket.IO message (API Gateway routes it to $default, not being a JSON object); the route's answer."""
        event = self._socketio(message_event(self.connection_id, self.user_id, self.company_id, text, self.exp))
        event["requestContext"]["routeKey"] = api().select(text)
        response = invoke(api().handler_of(event["requestContext"]["routeKey"]), event)
        assert response["statusCode"] == 200, response
        if deferrer().auto:
            run_deferred()
        body = response.get("body")
        return None if body is None else str(body)

    def pushed(self) -> list[str]:
        return self.gateway.texts[self.connection_id]
