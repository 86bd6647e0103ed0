"""docs/socketio.md end to end: the real python-socketio client, and the real socket.io-client (Node), against `roomcast
serve`, doing what the original front end does over one connection per user."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import socketio
from websockets.asyncio.client import connect

from roomcast_local.environment import mint_token
from roomcast_local.testing import DEVELOPMENT_SECRET, RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
T = TypeVar("T")
SECRET = DEVELOPMENT_SECRET
ROOT = Path(__file__).resolve().parents[2]
NAMESPACES = ["/conversations", "/notifications", "/analytics"]
# Short, so that one test outlasts several ping intervals and the idle timeout.
PING_INTERVAL = 2
IDLE_TIMEOUT = 6
HEARTBEAT_SHARDS = 2


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def sio_stack() -> Iterator[RunningStack]:
    # A heartbeat run every 2 s is one invocation per shard (decision 0093) on the local stack's 4 workers a
    # function: two shards keep each run's pings within the interval on a busy machine.
    running = start_stack(
        "--ping-interval",
        str(PING_INTERVAL),
        "--idle-timeout",
        str(IDLE_TIMEOUT),
        "--parameter-overrides",
        f"HourIndexShards={HEARTBEAT_SHARDS}",
    )
    yield running
    stop_stack(running)


class Front:
    """One front end: a python-socketio client over one WebSocket, every server event kept per namespace."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.heard: dict[str, list[tuple[str, Any]]] = {namespace: [] for namespace in NAMESPACES}
        for namespace in NAMESPACES:
            self.client.on("*", self._keeper(namespace), namespace=namespace)

    def _keeper(self, namespace: str) -> Any:
        async def keep(event: str, data: Any) -> None:
            self.heard[namespace].append((event, data))

        return keep

    @classmethod
    async def open(cls, url: str, user: str, company_id: str, namespaces: list[str] = NAMESPACES) -> Front:
        front = cls()
        token = mint_token(user, company_id, None, 3600, SECRET)
        await front.client.connect(
            f"{url}?token={token}", transports=["websocket"], namespaces=namespaces, wait_timeout=10
        )
        return front

    async def call(self, namespace: str, action: str, *argument: Any) -> Any:
        return await self.client.call(action, *argument, namespace=namespace, timeout=10)

    async def next(self, namespace: str, event: str, timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for index, (name, data) in enumerate(self.heard[namespace]):
                    if name == event:
                        del self.heard[namespace][index]
                        return data
                await asyncio.sleep(0.02)

    def names(self, namespace: str) -> list[str]:
        return [name for name, _ in self.heard[namespace]]


def http(stack: RunningStack) -> str:
    return stack.ws_url.replace("ws://", "http://")


def notify(stack: RunningStack, company_id: str, user_id: str) -> None:
    events = boto3.client(
        "events",
        endpoint_url=http(stack),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    detail = {"companyId": company_id, "userId": user_id, "type": "lead", "title": "New lead"}
    events.put_events(
        Entries=[{"Source": "crm", "DetailType": "Notify", "Detail": json.dumps(detail), "EventBusName": "roomcast"}]
    )


def test_the_original_front_end_over_one_connection(sio_stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        url = http(sio_stack)
        ana = await Front.open(url, "ana", acme)
        ben = await Front.open(url, "ben", acme)
        assert set(ana.client.namespaces) == set(NAMESPACES)
        assert await ana.next("/conversations", "status:online") == {"userId": "ben"}

        created = await ana.call("/conversations", "conversation:create", {"subject": "Pricing"})
        conversation = created["data"]["conversation"]["id"]
        joined = await ben.call("/conversations", "join:conversation", conversation)  # a bare id
        assert joined == {"ok": True, "data": {"conversationId": conversation, "room": f"conversation:{conversation}"}}

        # With an ack: the callback's one argument. Without: the reply event.
        sent = await ana.call("/conversations", "message:send", {"conversationId": conversation, "content": "hi"})
        assert sent["ok"] is True
        assert sent["data"]["id"]
        assert (await ben.next("/conversations", "message:new"))["content"] == "hi"
        await ana.client.emit("message:send", {"conversationId": conversation, "content": "again"}, "/conversations")
        assert (await ana.next("/conversations", "message:sent"))["id"]
        assert (await ben.next("/conversations", "message:new"))["content"] == "again"

        await ben.client.emit("conversation:typing", conversation, "/conversations")
        typing = await ana.next("/conversations", "conversation:typing")
        assert typing["userId"] == "ben"
        await asyncio.sleep(0.5)
        assert "conversation:typing" not in ben.names("/conversations")  # the sender is left out

        carl = await Front.open(url, "carl", acme, ["/conversations"])
        assert await ana.next("/conversations", "status:online") == {"userId": "carl"}
        await carl.client.disconnect()
        assert await ana.next("/conversations", "status:offline") == {"userId": "carl"}

        notify(sio_stack, acme, "ana")
        notification = (await ana.next("/notifications", "notification:new"))["notification"]
        read = await ana.call("/notifications", "notification:read", notification["id"])  # a bare id
        assert read["ok"] is True
        assert read["data"]["id"] == notification["id"]
        assert (await ana.next("/notifications", "notification:read"))["id"] == notification["id"]
        await ana.client.emit("notification:all_read", namespace="/notifications")  # no argument at all
        assert (await ana.next("/notifications", "notification:all_read"))["count"] == 0

        await ana.client.emit("analytics:request", "today", "/analytics")  # a bare period
        assert (await ana.next("/analytics", "analytics:update"))["period"] == "today"
        assert (await ana.call("/analytics", "analytics:subscribe"))["ok"] is True
        await ben.call("/conversations", "message:send", {"conversationId": conversation, "content": "figures"})
        assert (await ana.next("/analytics", "metrics:update"))["totalMessages"] >= 3

        refused = await ana.call("/conversations", "join:conversation", 42)
        assert refused["ok"] is False
        assert refused["error"]["code"] == "bad_request"

        assert (await ana.call("/notifications", "ping"))["ok"] is True  # the shared actions, in any namespace
        await ana.client.disconnect()
        await ben.client.disconnect()

    run(scenario())


def test_unknown_namespace_and_bad_token_are_refused(sio_stack: RunningStack) -> None:
    async def scenario() -> None:
        url = http(sio_stack)
        with pytest.raises(socketio.exceptions.ConnectionError, match="namespace"):
            await Front.open(url, "ana", company(), ["/random"])
        stranger = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await stranger.connect(f"{url}?token=not-a-jwt", transports=["websocket"], namespaces=["/conversations"])

    run(scenario())


def test_a_room_of_one_native_and_one_socketio_client_both_ways(sio_stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        front = await Front.open(http(sio_stack), "ana", acme, ["/conversations"])
        native = await Client.open(sio_stack.ws_url, "ben", acme)
        conversation = (await native.ok("conversation:create", {"subject": "mixed"}))["conversation"]["id"]
        assert (await front.call("/conversations", "join:conversation", conversation))["ok"] is True

        await native.ok("message:send", {"conversationId": conversation, "content": "from native"})
        assert (await front.next("/conversations", "message:new"))["content"] == "from native"
        assert (await native.next("message:new"))["data"]["content"] == "from native"  # its own, as a member
        await front.call("/conversations", "message:send", {"conversationId": conversation, "content": "from sio"})
        heard = await native.next("message:new")
        assert heard["namespace"] == "/conversations"
        assert heard["data"]["content"] == "from sio"
        await native.close()
        await front.client.disconnect()

    run(scenario())


def test_an_idle_client_stays_through_pings_and_the_idle_timeout(sio_stack: RunningStack) -> None:
    async def scenario() -> None:
        front = await Front.open(http(sio_stack), "idle", company(), ["/conversations"])
        sid = front.client.get_sid("/conversations")
        # Several ping intervals, and more than two idle timeouts, without a word from the client.
        await asyncio.sleep(3 * IDLE_TIMEOUT)
        assert front.client.connected
        assert front.client.get_sid("/conversations") == sid
        assert (await front.call("/conversations", "ping"))["ok"] is True
        await front.client.disconnect()

    run(scenario())


def test_the_open_packet_arrives_soon_after_the_upgrade(sio_stack: RunningStack) -> None:
    """The delay API Gateway's rule adds (no post until $connect returns), measured on warm functions."""

    async def scenario() -> list[float]:
        delays = []
        for _ in range(5):
            token = mint_token("opener", company(), None, 60, SECRET)
            async with connect(f"{sio_stack.ws_url}/socket.io/?EIO=4&transport=websocket&token={token}") as ws:
                upgraded = time.monotonic()
                first = await asyncio.wait_for(ws.recv(), 5)
                delays.append(time.monotonic() - upgraded)
            handshake = json.loads(str(first)[1:])
            assert str(first)[0] == "0"
            assert handshake["pingInterval"] == PING_INTERVAL * 1000
            assert handshake["upgrades"] == []
            assert handshake["maxPayload"] <= 32 * 1024
        return delays

    delays = run(scenario())
    print(f"open packet after the upgrade: {', '.join(f'{delay * 1000:.0f} ms' for delay in delays)}")
    assert sorted(delays)[len(delays) // 2] < 1.0


def test_the_real_socket_io_client(sio_stack: RunningStack) -> None:
    script = ROOT / "tests" / "e2e" / "socketio_client.mjs"
    if not (ROOT / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("socket.io-client is not installed: run `make install` (npm ci)")
    acme = company()
    environment = {
        **os.environ,
        "ROOMCAST_URL": http(sio_stack),
        "TOKEN_ANA": mint_token("ana", acme, None, 3600, SECRET),
        "TOKEN_BEN": mint_token("ben", acme, None, 3600, SECRET),
        "TOKEN_CARL": mint_token("carl", acme, None, 3600, SECRET),
    }
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for socket.io-client"
    finished = subprocess.run(  # noqa: S603 - node with our own script
        [node, str(script)], env=environment, capture_output=True, text=True, timeout=90, check=False, cwd=ROOT
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "all passed" in finished.stdout
