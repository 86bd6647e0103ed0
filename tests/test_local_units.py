"""Pieces of the local stack that a socket cannot easily reach: template reading, rule matching, 410 timing."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from roomcast_local.environment import function_environment
from roomcast_local.eventbridge import matches
from roomcast_local.events import Peer
from roomcast_local.stack import Connection, LocalStack, StackConfig, State
from roomcast_local.template import load_template, websocket_api

TEMPLATE = load_template()


def test_routes_come_from_the_template() -> None:
    template = load_template()
    api = websocket_api(template)
    assert api.routes["message:send"].function == "ConversationsFunction"
    (route,) = [body for body in template["Resources"].values() if body.get("Properties", {}).get("RouteKey") == "ping"]
    route["Properties"]["RouteKey"] = "heartbeat"
    changed = websocket_api(template)
    assert "heartbeat" in changed.routes
    assert "ping" not in changed.routes
    assert changed.select('{"action": "ping"}') == "$default"


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "message:send"}', "message:send"),
        ('{"action": "no-such-route"}', "$default"),
        ('{"action": "$connect"}', "$default"),
        ('{"action": 5}', "$default"),
        ('["message:send"]', "$default"),
        ("message:send", "$default"),
        ("", "$default"),
    ],
)
def test_route_selection_follows_the_action_field(body: str, route: str) -> None:
    assert websocket_api(TEMPLATE).select(body) == route


def test_the_environment_is_resolved_from_globals() -> None:
    environment = function_environment(TEMPLATE)
    assert environment["CONNECTIONS_TABLE"] == "ConnectionsTable"
    assert environment["POWERTOOLS_SERVICE_NAME"] == "roomcast"
    assert "JWT_SECRET_ARN" not in environment  # a condition: unknowable locally


@pytest.mark.parametrize(
    ("pattern", "matched"),
    [
        ({"detail-type": ["Notify"]}, True),
        ({"detail-type": ["Emit", "Notify"]}, True),
        ({"detail-type": ["Emit"]}, False),
        ({"detail": {"companyId": ["acme"]}}, True),
        ({"detail": {"companyId": [{"prefix": "ac"}]}}, True),
        ({"detail": {"companyId": [{"anything-but": "acme"}]}}, False),
        ({"detail": {"userId": [{"exists": True}]}}, False),
        ({"detail": {"userId": [{"exists": False}]}}, True),
        ({"source": [{"suffix": ".crm"}]}, True),
    ],
)
def test_event_patterns(pattern: dict[str, object], matched: bool) -> None:
    event = {"detail-type": "Notify", "source": "billing.crm", "detail": {"companyId": "acme"}}
    assert matches(pattern, event) is matched


def test_a_connection_is_gone_to_the_management_api_until_connect_returns() -> None:
    async def scenario() -> None:
        stack = LocalStack(StackConfig())
        peer = Peer("conn-1", "127.0.0.1", None, "localhost", "local")
        stack.connections["conn-1"] = Connection(peer, state=State.CONNECTING)
        async with TestClient(TestServer(stack.build_app())) as client:
            posted = await client.post("/@connections/conn-1", data=b"{}")
            assert posted.status == 410
            assert posted.headers["x-amzn-ErrorType"] == "GoneException"
            assert (await client.get("/local/@connections/conn-1")).status == 410
            assert (await client.get("/")).status == 426

    asyncio.run(scenario())
