"""Sessions that outlive connections end to end (docs/socketio.md, decision 0065): the real socket.io-client
through a network blip and through API Gateway's own close, against `roomcast serve` with the settings a
developer would export to see it (a small RECOVERY_MAX_EVENTS, a short window and hard timeout)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from roomcast_local.environment import mint_token
from roomcast_local.testing import DEVELOPMENT_SECRET, RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MAX_EVENTS = "8"
WINDOW = "3"
HARD_TIMEOUT = "12"


@pytest.fixture(scope="module")
def blip_stack() -> Iterator[RunningStack]:
    running = start_stack(environment={"RECOVERY_MAX_EVENTS": MAX_EVENTS})
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def closing_stack() -> Iterator[RunningStack]:
    running = start_stack("--hard-timeout", HARD_TIMEOUT, environment={"RECOVERY_WINDOW_SECONDS": WINDOW})
    yield running
    stop_stack(running)


def scenario(stack: RunningStack, name: str) -> None:
    if not (ROOT / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("socket.io-client is not installed: run `make install` (npm ci)")
    acme = company()
    environment = {
        **os.environ,
        "SCENARIO": name,
        "ROOMCAST_URL": stack.http_url,
        "RECOVERY_MAX_EVENTS": MAX_EVENTS,
        "RECOVERY_WINDOW_SECONDS": WINDOW,
        "HARD_TIMEOUT": HARD_TIMEOUT,
        **{
            f"TOKEN_{user.upper()}": mint_token(user, acme, None, 3600, DEVELOPMENT_SECRET)
            for user in ("ana", "ben", "carl", "dora")
        },
    }
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for socket.io-client"
    finished = subprocess.run(  # noqa: S603 - node with our own script
        [node, str(ROOT / "tests" / "e2e" / "socketio_recovery.mjs")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    if "RECOVERY_STACK_LOG" in os.environ:  # the whole log, for a failure's post-mortem
        Path(os.environ["RECOVERY_STACK_LOG"]).write_text(stack.log() + finished.stdout + finished.stderr)
    assert finished.returncode == 0, finished.stdout + finished.stderr + "\n--- stack log ---\n" + stack.log()[-4000:]
    assert "all passed" in finished.stdout


def test_socketio_client_recovers_through_a_network_blip(blip_stack: RunningStack) -> None:
    scenario(blip_stack, "blip")


def test_socketio_client_recovers_through_the_gateways_close(closing_stack: RunningStack) -> None:
    scenario(closing_stack, "gateway")


# ---- native frames, with a real WebSocket client ----


async def native(stack: RunningStack, user: str, company_id: str, **query: str) -> Client:
    token = mint_token(user, company_id, None, 3600, DEVELOPMENT_SECRET)
    extra = "".join(f"&{name}={value}" for name, value in query.items())
    return Client(await connect(f"{stack.ws_url}?token={token}&recovery=1{extra}"))


# The stack's line for each $disconnect invocation that has returned.
DISCONNECTED = re.compile(r"\$disconnect +\S+ +DisconnectFunction +200 ")


async def until_logged(stack: RunningStack, line: re.Pattern[str], times: int, timeout: float = 20.0) -> None:
    """Until the stack's log has `times` lines matching `line`."""
    async with asyncio.timeout(timeout):
        while len(line.findall(stack.log())) < times:
            await asyncio.sleep(0.05)


async def everything(client: Client, until: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every frame up to and including the first `until` event, in order."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await client.connection.recv())
            frames.append(frame)
            if frame.get("event") == until:
                return frames


def offset_of(frames: list[dict[str, Any]]) -> str:
    offset: str = [frame for frame in frames if "offset" in frame][-1]["offset"]
    return offset


async def a_native_session_through_a_drop(stack: RunningStack, drop: str) -> None:
    acme = company()
    ana = await native(stack, "ana", acme)
    hello = await everything(ana, "session")
    session_id = hello[-1]["data"]["sessionId"]
    assert hello[-1]["data"]["recovered"] is False
    conversation = (await ana.ok("conversation:create", {}))["conversation"]["id"]
    if drop == "gateway":
        await asyncio.sleep(float(HARD_TIMEOUT) / 2)  # ben's connection is closed later than ana's
    ben = await Client.open(stack.ws_url, "ben", acme)
    await ben.ok("message:send", {"conversationId": conversation, "content": "before"})
    seen = await everything(ana, "message:new")
    offset = offset_of(hello + seen)
    if drop == "blip":
        ana.connection.transport.abort()  # the TCP connection destroyed: no close frame
    else:
        await ana.connection.wait_closed()  # the stack's hard timeout: API Gateway's own close (1001)
        assert ana.connection.close_code == 1001
    missed = [
        (await ben.ok("message:send", {"conversationId": conversation, "content": text}))["seq"]
        for text in ("gap-1", "gap-2")
    ]
    back = await native(stack, "ana", acme, session=session_id, offset=offset)
    replay = await everything(back, "session")
    assert replay[-1]["data"] == {"sessionId": session_id, "recovered": True}
    messages = [frame for frame in replay if frame["event"] == "message:new"]
    assert [frame["data"]["seq"] for frame in messages] == missed
    assert all("offset" in frame for frame in messages)
    await ben.ok("message:send", {"conversationId": conversation, "content": "after"})
    assert (await back.next("message:new"))["data"]["content"] == "after"
    await back.close()
    await ben.close()


def test_a_native_client_recovers_through_a_network_blip(blip_stack: RunningStack) -> None:
    asyncio.run(a_native_session_through_a_drop(blip_stack, "blip"))


def test_a_native_client_recovers_through_the_gateways_close(closing_stack: RunningStack) -> None:
    asyncio.run(a_native_session_through_a_drop(closing_stack, "gateway"))


def test_a_native_close_with_1000_ends_the_session(blip_stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        ana = await native(blip_stack, "ana", acme)
        hello = await everything(ana, "session")
        closes = len(DISCONNECTED.findall(blip_stack.log()))
        await ana.close()  # code 1000
        # The session ends in $disconnect, which API Gateway runs after the close: reconnect once it has run.
        await until_logged(blip_stack, DISCONNECTED, closes + 1)
        back = await native(blip_stack, "ana", acme, session=hello[-1]["data"]["sessionId"], offset=hello[-1]["offset"])
        again = await everything(back, "session")
        assert again[-1]["data"]["recovered"] is False
        assert again[-1]["data"]["sessionId"] != hello[-1]["data"]["sessionId"]
        await back.close()

    asyncio.run(scenario())
