"""A room past the large-room threshold on the local stack, through real WebSocket clients: the sender's request
hands it off, and the deferred function's split and chunk workers post to it (decision 0052)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roomcast_local.template import TEMPLATE
from roomcast_local.testing import RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
THRESHOLD = 2
MEMBERS = 6


@pytest.fixture(scope="module")
def large_rooms_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # The local stack takes each parameter's default: a template whose threshold is small.
    source = TEMPLATE.read_text()
    default = "  LargeRoomThreshold:\n    Type: Number\n    Default: 500\n"
    assert default in source
    path: Path = tmp_path_factory.mktemp("template") / "template.yaml"
    path.write_text(source.replace(default, default.replace("500", str(THRESHOLD))))
    running = start_stack("--template", str(path), "--verbose")
    yield running
    stop_stack(running)


def send_metrics(stack: RunningStack) -> list[str]:
    """The metrics of each `message:send` (the only invocations here that count `Messages`), as --verbose logs them."""
    return [line for line in stack.log().splitlines() if '"Messages":[' in line]


async def ok(client: Client, action: str, data: dict[str, Any]) -> dict[str, Any]:
    """`Client.ok` with room for the cold starts of a stack of its own on a busy machine."""
    await client.send(action, data, ack_id=action)
    ack = await client.next("ack", timeout=30)
    assert (ack["ackId"], ack["ok"]) == (action, True), ack
    result: dict[str, Any] = ack["data"]
    return result


def test_a_send_past_the_threshold_reaches_each_member_once_and_no_other_company(
    large_rooms_stack: RunningStack,
) -> None:
    async def scenario() -> None:
        url = large_rooms_stack.ws_url
        tenant = company()
        members = [await Client.open(url, f"u-{index}", tenant) for index in range(MEMBERS)]
        outsider = await Client.open(url, "u-x", company())
        sender = members[0]
        conversation = (await ok(sender, "conversation:create", {}))["conversation"]["id"]
        for member in members[1:]:
            await ok(member, "join:conversation", {"conversationId": conversation})
        sent = await ok(sender, "message:send", {"conversationId": conversation, "content": "to everyone"})
        for member in members:
            new = await member.next("message:new", timeout=15)
            assert new["data"]["id"] == sent["id"]
        # The send's own request handed the room off (its split and chunks then posted it), not posted to it.
        async with asyncio.timeout(10):
            while not send_metrics(large_rooms_stack):
                await asyncio.sleep(0.1)
        (metrics,) = send_metrics(large_rooms_stack)
        assert '"LargeRoomsHandedOff":[1.0]' in metrics, metrics
        for member in members:
            assert [frame for frame in await member.silent() if frame.get("event") == "message:new"] == []
        assert [frame for frame in await outsider.silent() if frame.get("event") == "message:new"] == []
        for client in [*members, outsider]:
            await client.close()

    asyncio.run(scenario())
