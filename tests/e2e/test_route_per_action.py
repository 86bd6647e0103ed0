"""RoutePerAction=false end to end: the local stack reads the parameter, routes only $connect, $disconnect and
$default, and every native action still reaches its namespace's code through the default function (decision 0072)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from roomcast_local.testing import RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    running = start_stack("--parameter-overrides", "RoutePerAction=false")
    yield running
    stop_stack(running)


def _invoked(stack: RunningStack) -> set[tuple[str, str]]:
    """(route, function) of every WebSocket invocation the stack logged."""
    lines = re.findall(r"^\S+ (\S+)\s+\S{16}\s+(\S+Function) ", stack.log(), re.MULTILINE)
    return set(lines)


def test_only_the_three_dollar_routes_exist(stack: RunningStack) -> None:
    # The banner follows the "ready" line, which start_stack returns on: it may still be on its way.
    deadline = time.monotonic() + 10
    while "Parameter      RoutePerAction=false" not in stack.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Routes         3, no action routes: every action goes to the default route" in stack.log()
    assert "Parameter      RoutePerAction=false" in stack.log()


def test_every_namespace_answers_its_actions_through_default(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        ana = await Client.open(stack.ws_url, "ana", acme)
        ben = await Client.open(stack.ws_url, "ben", acme)
        assert (await ana.next("status:online"))["data"] == {"userId": "ben"}
        # /conversations
        conversation = (await ana.ok("conversation:create", {"subject": "no routes"}))["conversation"]["id"]
        await ben.ok("join:conversation", {"conversationId": conversation})
        await ana.send("message:send", {"conversationId": conversation, "content": "hi", "clientMessageId": "m-1"})
        sent = await ana.next("message:sent")
        heard = await ben.next("message:new")
        assert (heard["namespace"], heard["data"]["id"], heard["data"]["seq"]) == (
            "/conversations",
            sent["data"]["id"],
            sent["data"]["seq"],
        )
        history = await ben.ok("conversation:history", {"conversationId": conversation})
        assert [message["content"] for message in history["messages"]] == ["hi"]
        # /notifications and /analytics
        assert (await ana.ok("notification:list"))["unreadCount"] == 0
        await ana.send("analytics:request", {"period": "today"})
        figures = await ana.next("analytics:update")
        assert (figures["namespace"], figures["data"]["totalMessages"]) == ("/analytics", 1)
        # common, and what no namespace has
        assert "timestamp" in await ana.ok("ping")
        await ana.send("message:sned", {}, "typo")
        refused = await ana.next("ack")
        assert (refused["ok"], refused["error"]["code"]) == (False, "unknown_action")
        # The same rules as through a route of its own: another company's conversation does not exist.
        stranger = await Client.open(stack.ws_url, "gus", company())
        await stranger.send("join:conversation", {"conversationId": conversation}, "x")
        assert (await stranger.next("ack"))["error"]["code"] == "not_found"
        for client in (ana, ben, stranger):
            await client.close()

    asyncio.run(scenario())
    invoked = _invoked(stack)
    assert ("$default", "DefaultFunction") in invoked
    routed = {function for _, function in invoked}
    assert routed <= {"AuthorizerFunction", "ConnectFunction", "DisconnectFunction", "DefaultFunction"}, invoked


def test_a_parameter_the_template_refuses_stops_the_stack_with_one_line() -> None:
    with pytest.raises(RuntimeError, match=r"roomcast serve: RoutePerAction must be one of true, false, not 'no'"):
        start_stack("--parameter-overrides", "RoutePerAction=no")
