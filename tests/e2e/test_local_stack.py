"""End to end through `roomcast serve`: real WebSocket clients and real boto3 clients over real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import boto3
import jwt
import pytest
from botocore.config import Config
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roomcast_local.environment import mint_token
from roomcast_local.testing import DEVELOPMENT_SECRET, RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
T = TypeVar("T")
SECRET = DEVELOPMENT_SECRET
COLD = 30.0  # seconds: a fresh stack's function, importing on its first invocation


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def aws_client(service: str, stack: RunningStack) -> Any:
    """A real boto3 client of `service`, pointed at the local stack (@connections at its stage, as in AWS)."""
    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    make: Any = session.client
    endpoint = stack.management_url if service == "apigatewaymanagementapi" else stack.http_url
    return make(service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))


def test_handshakes_are_accepted_or_refused_like_api_gateway(stack: RunningStack) -> None:
    async def scenario() -> None:
        good = mint_token("u-1", company(), None, 60, SECRET)
        async with connect(f"{stack.ws_url}?token={good}") as ws:
            await ws.send(json.dumps({"action": "ping", "ackId": "p"}))
            assert json.loads(await ws.recv())["ok"] is True
        async with connect(stack.ws_url, additional_headers={"Authorization": f"Bearer {good}"}) as ws:
            await ws.send(json.dumps({"action": "ping"}))
            # The user's earlier connection may be announced online to this one meanwhile (deferred).
            events = [json.loads(await ws.recv())["event"]]
            while events[-1] == "status:online":
                events.append(json.loads(await ws.recv())["event"])
            assert events[-1] == "pong"
        for url, status in [
            (stack.ws_url, 401),
            (f"{stack.ws_url}?token=not-a-jwt", 403),
            (
                f"{stack.ws_url}?token={mint_token('u-1', 'acme', None, 60, 'wrong-secret-wrong-secret-wrong-secret')}",
                403,
            ),
            (f"{stack.ws_url}?token={_expired_token()}", 403),
        ]:
            with pytest.raises(InvalidStatus) as refused:
                await connect(url)
            assert refused.value.response.status_code == status

    run(scenario())


def _expired_token() -> str:
    return jwt.encode({"userId": "u-1", "companyId": "acme", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256")


def test_two_colleagues_chat_and_another_company_hears_nothing(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        ana = await Client.open(stack.ws_url, "ana", acme)
        ben = await Client.open(stack.ws_url, "ben", acme)
        stranger = await Client.open(stack.ws_url, "gus", company())
        conversation = (await ana.ok("conversation:create", {"subject": "demo"}))["conversation"]["id"]
        await ben.ok("join:conversation", {"conversationId": conversation})

        await ana.send("message:send", {"conversationId": conversation, "content": "hi ben", "clientMessageId": "m1"})
        sent = await ana.next("message:sent")
        heard = await ben.next("message:new")
        assert heard["data"]["id"] == sent["data"]["id"]
        assert heard["data"]["content"] == "hi ben"
        await ben.send("message:send", {"conversationId": conversation, "content": "hi ana"})
        assert (await ana.next("message:new"))["data"]["content"] == "hi ben"
        assert (await ana.next("message:new"))["data"]["content"] == "hi ana"

        await stranger.send("message:send", {"conversationId": conversation, "content": "let me in"}, "x")
        refused = await stranger.next("ack")
        assert refused["error"]["code"] == "not_found"
        assert await stranger.silent() == []
        leftovers = await ana.silent() + await ben.silent()
        assert leftovers, "ana and ben still hold their own earlier frames"
        assert not [frame for frame in leftovers if "let me in" in json.dumps(frame)]
        for client in (ana, ben, stranger):
            await client.close()

    run(scenario())


def test_typing_presence_and_history_after_a_reconnect(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        ana = await Client.open(stack.ws_url, "ana", acme)
        ben = await Client.open(stack.ws_url, "ben", acme)
        assert (await ana.next("status:online"))["data"] == {"userId": "ben"}
        conversation = (await ana.ok("conversation:create", {}))["conversation"]["id"]
        await ben.ok("join:conversation", {"conversationId": conversation})

        await ben.send("conversation:typing", {"conversationId": conversation, "isTyping": True})
        typing = await ana.next("conversation:typing")
        assert typing["data"] == {"conversationId": conversation, "userId": "ben", "isTyping": True}

        first = await ana.ok("message:send", {"conversationId": conversation, "content": "one"})
        await ben.next("message:new")
        await ben.close()
        assert (await ana.next("status:offline"))["data"] == {"userId": "ben"}
        await ana.ok("message:send", {"conversationId": conversation, "content": "two"})
        await ana.ok("message:send", {"conversationId": conversation, "content": "three"})

        ben = await Client.open(stack.ws_url, "ben", acme)
        assert (await ana.next("status:online"))["data"] == {"userId": "ben"}
        missed = await ben.ok("conversation:history", {"conversationId": conversation, "after": first["id"]})
        assert [message["content"] for message in missed["messages"]] == ["two", "three"]
        users = await ben.ok("presence:list")
        assert {user["userId"] for user in users["users"]} == {"ana", "ben"}
        await ana.close()
        await ben.close()

    run(scenario())


def test_connections_management_api_through_boto3(stack: RunningStack) -> None:
    management = aws_client("apigatewaymanagementapi", stack)

    async def scenario() -> None:
        ana = await Client.open(stack.ws_url, "ana", company())
        seen = len(_pings(stack))
        await ana.send("ping")  # the stack logs the connection id of each invocation: learn ours from it
        await ana.next("pong")
        connection_id = await asyncio.to_thread(_connection_id_of_next_ping, stack, seen)

        await asyncio.to_thread(management.post_to_connection, ConnectionId=connection_id, Data=b'{"event":"hello"}')
        assert (await ana.next("hello")) == {"event": "hello"}

        info = await asyncio.to_thread(management.get_connection, ConnectionId=connection_id)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert info["ConnectedAt"].timestamp() <= time.time()

        await asyncio.to_thread(management.delete_connection, ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            await ana.next("never", timeout=5)

        for call in (
            lambda: management.post_to_connection(ConnectionId=connection_id, Data=b"{}"),
            lambda: management.get_connection(ConnectionId=connection_id),
            lambda: management.delete_connection(ConnectionId="unknown"),
        ):
            with pytest.raises(management.exceptions.GoneException):
                await asyncio.to_thread(call)

    run(scenario())


def _pings(stack: RunningStack) -> list[str]:
    """The connection ids of the `ping` invocations the stack has logged so far (one line per invocation)."""
    return [line.split()[2] for line in stack.log().splitlines() if " ping " in line]


def _connection_id_of_next_ping(stack: RunningStack, seen: int) -> str:
    """The connection of the first ping logged after the `seen` first ones. The line may reach the test's
    reader a little after the pong reaches the client."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pings = _pings(stack)
        if len(pings) > seen:
            return pings[seen]
        time.sleep(0.05)
    raise AssertionError("no new ping in the stack's log:\n" + stack.log())


def test_put_events_through_boto3(stack: RunningStack) -> None:
    events = aws_client("events", stack)
    result = events.put_events(
        Entries=[
            {"Source": "crm.test", "DetailType": "CampaignStarted", "Detail": json.dumps({"companyId": "acme"})},
            {"Source": "crm.test", "DetailType": "CampaignStarted", "Detail": "not json"},
        ]
    )
    assert result["FailedEntryCount"] == 1
    assert "EventId" in result["Entries"][0]
    assert result["Entries"][1]["ErrorCode"] == "MalformedDetail"


def test_not_json_goes_to_default_and_an_oversized_frame_closes_with_1009(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        watcher = await Client.open(stack.ws_url, "watcher", acme)
        client = await Client.open(stack.ws_url, "big", acme)
        await client.connection.send("hello?")
        assert (await client.next("error"))["data"]["code"] == "bad_request"
        await client.connection.send("x" * (32 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            await client.next("never")
        assert client.connection.close_code == 1009
        # The stack ran $disconnect for it: the company hears that the user left.
        assert (await watcher.next("status:offline"))["data"] == {"userId": "big"}
        await watcher.close()

    run(scenario())


def test_idle_connections_are_closed_and_shutdown_disconnects_everyone() -> None:
    # Longer than a cold start on a busy machine (seen at 3 s under load: the ping's cold start outlasted it).
    short = start_stack("--idle-timeout", "6")
    try:

        async def scenario() -> None:
            acme = company()
            quiet = await Client.open(short.ws_url, "quiet", acme)
            with pytest.raises(ConnectionClosed):
                await quiet.next("never", timeout=15)
            assert quiet.connection.close_code == 1001
            last = await Client.open(short.ws_url, "last", acme)
            await last.send("ping")
            await last.next("pong")

        run(scenario())
    finally:
        assert stop_stack(short) == 0
    log = short.log()
    assert log.count("$disconnect") == 2, log
    assert "shutting down" in log


def test_backend_services_publish_with_boto3_and_clients_receive(stack: RunningStack) -> None:
    events = aws_client("events", stack)

    def put(detail_type: str, detail: dict[str, Any]) -> None:
        """A plain boto3 put_events, as a service without the emitter (tests/e2e/test_emitters.py) publishes."""
        entry = {"Source": "crm.billing", "DetailType": detail_type, "Detail": json.dumps(detail)}
        assert events.put_events(Entries=[{**entry, "EventBusName": "roomcast"}])["FailedEntryCount"] == 0

    async def scenario() -> None:
        acme, other = company(), company()
        ana = await Client.open(stack.ws_url, "ana", acme)
        ben = await Client.open(stack.ws_url, "ben", acme)
        outsider = await Client.open(stack.ws_url, "ana", other)  # same user id, other company
        conversation = (await ana.ok("conversation:create", {}))["conversation"]["id"]
        await asyncio.sleep(0.2)
        await ben.silent(0.2)

        await asyncio.to_thread(
            put, "Notify", {"companyId": acme, "userId": "ana", "type": "task", "title": "Call back"}
        )
        notification = (await ana.next("notification:new"))["data"]["notification"]
        assert notification["title"] == "Call back"

        received = {"companyId": acme, "conversationId": conversation, "contactId": "ct-1", "content": "hola"}
        await asyncio.to_thread(put, "MessageReceived", received)
        assert (await ana.next("message:new"))["data"]["senderType"] == "contact"

        await asyncio.to_thread(put, "CampaignStarted", {"companyId": acme, "campaignId": "k1", "name": "Spring"})
        assert (await ben.next("campaign:started"))["data"] == {"campaignId": "k1", "name": "Spring"}

        await asyncio.to_thread(put, "Emit", {"companyId": acme, "room": f"company:{other}", "event": "deal:won"})
        await asyncio.to_thread(
            put, "Emit", {"companyId": acme, "room": "user:ben", "event": "deal:won", "data": {"id": 1}}
        )
        assert (await ben.next("deal:won"))["data"] == {"id": 1}

        assert await outsider.silent(0.5) == []
        listed = await ana.ok("notification:list")
        assert listed["unreadCount"] == 1
        for client in (ana, ben, outsider):
            await client.close()

    run(scenario())


def test_the_cli_publishes_to_the_local_stack(stack: RunningStack) -> None:
    import subprocess
    import sys

    async def scenario() -> None:
        acme = company()
        ana = await Client.open(stack.ws_url, "ana", acme)
        detail = json.dumps({"companyId": acme, "userId": "ana", "type": "task", "title": "From the CLI"})
        command = [sys.executable, "-m", "roomcast_local", "publish", "Notify", detail, "--endpoint", stack.http_url]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert (await ana.next("notification:new"))["data"]["notification"]["title"] == "From the CLI"
        refused = await asyncio.to_thread(
            subprocess.run,
            [*command[:4], "Notify", "{}", "--endpoint", stack.http_url],
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode == 2
        assert "invalid detail" in refused.stderr
        await ana.close()

    run(scenario())


def test_dashboard_viewers_get_metrics_after_a_message_and_from_the_schedule() -> None:
    fast = start_stack("--schedule-every", "1")
    try:

        async def scenario() -> None:
            acme = company()
            viewer = await Client.open(fast.ws_url, "boss", acme)
            other = await Client.open(fast.ws_url, "boss", company())
            # This stack is fresh: the first action of each function waits for its worker's imports (CI has
            # seen more than 5 s under load).
            assert await viewer.ok("analytics:subscribe", timeout=COLD) == {"room": f"analytics:{acme}"}
            await other.ok("analytics:subscribe")
            agent = await Client.open(fast.ws_url, "ana", acme)
            conversation = (await agent.ok("conversation:create", {}, timeout=COLD))["conversation"]["id"]
            # The schedule may push the figures from before the conversation first: handlers run concurrently.
            while (await viewer.next("metrics:update", timeout=COLD))["data"]["totalConversations"] != 1:
                pass
            await asyncio.sleep(1.1)
            await agent.ok("message:send", {"conversationId": conversation, "content": "hi"})
            while (update := await viewer.next("metrics:update"))["data"]["totalMessages"] != 1:
                pass
            assert update["namespace"] == "/analytics"
            report = await viewer.ok("analytics:request", {"period": "month"})
            assert (report["totalMessages"], report["totalConversations"]) == (1, 1)
            # Only the schedule pushes to the other company, with its own (empty) figures.
            pushed = await other.next("metrics:update", timeout=3)
            assert (pushed["data"]["totalMessages"], pushed["data"]["totalConversations"]) == (0, 0)
            for client in (viewer, other, agent):
                await client.close()

        run(scenario())
    finally:
        stop_stack(fast)
    assert "schedule" in fast.log()
