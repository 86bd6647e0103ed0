"""The presence grace and kick and revoke end to end (docs/protocol.md): `roomcast serve` started as a developer
would with PRESENCE_GRACE_SECONDS set short, real WebSocket clients, the real socket.io-client and python-socketio,
and backend events put on the bus with boto3. The grace's end goes through the local stack's SQS delay queue."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import jwt
import pytest
import socketio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roomcast_local.testing import DEVELOPMENT_SECRET, RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
GRACE = 6
# A kick is announced at once: well before a grace could have ended (and with room for a cold worker).
AT_ONCE = GRACE - 1


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    running = start_stack(environment={"PRESENCE_GRACE_SECONDS": str(GRACE)})
    yield running
    stop_stack(running)


def token(user: str, company_id: str, issued_at: int | None = None) -> str:
    claims: dict[str, Any] = {"userId": user, "companyId": company_id, "exp": int(time.time()) + 3600}
    if issued_at is not None:
        claims["iat"] = issued_at
    return jwt.encode(claims, DEVELOPMENT_SECRET, algorithm="HS256")


async def open_with(stack: RunningStack, jwt_token: str) -> Client:
    return Client(await connect(f"{stack.ws_url}?token={jwt_token}"))


def put(stack: RunningStack, detail_type: str, detail: dict[str, Any]) -> None:
    events = boto3.client(
        "events",
        endpoint_url=stack.http_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    result = events.put_events(
        Entries=[{"Source": "crm", "DetailType": detail_type, "Detail": json.dumps(detail), "EventBusName": "roomcast"}]
    )
    assert result["FailedEntryCount"] == 0, result


def statuses(frames: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["event"], f["data"]["userId"]) for f in frames if str(f.get("event", "")).startswith("status:")]


async def closed(client: Client, timeout: float) -> list[dict[str, Any]]:
    """Every frame until the server closes the connection (within `timeout`)."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                frames.append(json.loads(await client.connection.recv()))
        except ConnectionClosed:
            return frames


# ---- the grace ----


def test_a_reconnect_within_the_grace_is_silent_and_the_last_close_is_announced_once_after_it(
    stack: RunningStack,
) -> None:
    async def scenario() -> None:
        acme = company()
        ben = await Client.open(stack.ws_url, "ben", acme)
        ana = await Client.open(stack.ws_url, "ana", acme)
        assert (await ben.next("status:online"))["data"] == {"userId": "ana"}
        # A blip: ana's connection drops and she is back within the grace.
        await ana.close()
        listed = (await ben.ok("presence:list"))["users"]
        assert "ana" in [user["userId"] for user in listed]
        ana = await Client.open(stack.ws_url, "ana", acme)
        assert statuses(await ben.silent(GRACE + 1.5)) == []
        # She leaves for good: one status:offline, after the grace and not before.
        await ana.close()
        left = time.monotonic()
        offline = await ben.next("status:offline", timeout=GRACE + 10)
        assert offline["data"] == {"userId": "ana"}
        assert time.monotonic() - left >= GRACE - 0.5
        assert statuses(await ben.silent(GRACE + 1)) == []
        assert [user["userId"] for user in (await ben.ok("presence:list"))["users"]] == ["ben"]
        await ben.close()

    run(scenario())


# ---- kick ----


def test_disconnect_ends_a_users_native_connections_at_once_and_touches_no_one_else(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme, globex = company(), company()
        ben = await Client.open(stack.ws_url, "ben", acme)
        ana_one = await Client.open(stack.ws_url, "ana", acme)
        ana_two = await Client.open(stack.ws_url, "ana", acme)
        ana_elsewhere = await Client.open(stack.ws_url, "ana", globex)
        assert (await ben.next("status:online"))["data"] == {"userId": "ana"}

        put(stack, "Disconnect", {"companyId": acme, "userId": "ana", "reason": "account suspended"})
        for kicked in (ana_one, ana_two):
            frames = await closed(kicked, timeout=AT_ONCE)
            assert frames[-1] == {"event": "disconnect", "data": {"reason": "account suspended"}}
        offline = await ben.next("status:offline", timeout=AT_ONCE)
        assert offline["data"] == {"userId": "ana"}
        # Nobody else: ben, and ana in another company, still connected and answered.
        assert await ben.ok("ping")
        assert await ana_elsewhere.ok("ping")
        assert "ana" in [user["userId"] for user in (await ana_elsewhere.ok("presence:list"))["users"]]
        assert statuses(await ben.silent(GRACE + 1)) == []  # and no second offline after a grace
        await ben.close()
        await ana_elsewhere.close()

    run(scenario())


def test_a_kicked_socketio_client_hears_io_server_disconnect_and_does_not_reconnect(stack: RunningStack) -> None:
    acme = company()

    async def watch() -> Client:
        return await Client.open(stack.ws_url, "ben", acme)

    environment = {
        **os.environ,
        "ROOMCAST_URL": stack.http_url,
        "TOKEN": token("ana", acme),
        "WITHIN_MS": str(int(AT_ONCE * 1000)),
    }
    script = ROOT / "tests" / "e2e" / "socketio_kick.mjs"
    executable = shutil.which("node")
    assert executable is not None, "Node.js is needed for socket.io-client"
    node = subprocess.Popen(  # noqa: S603 - node with our own script
        [executable, str(script)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert node.stdout is not None
    try:
        assert node.stdout.readline().strip() == "ready"
        put(stack, "Disconnect", {"companyId": acme, "userId": "ana"})
        output, _ = node.communicate(timeout=30)
    finally:
        node.kill()
    assert node.returncode == 0, output
    assert output.strip().endswith("kicked")

    # The kicked user's sessions are over: she is not listed.
    async def roster() -> list[str]:
        ben = await watch()
        users = [user["userId"] for user in (await ben.ok("presence:list"))["users"]]
        await ben.close()
        return users

    assert run(roster()) == ["ben"]


def test_a_kicked_python_socketio_client_is_disconnected_by_the_server(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme = company()
        client = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1)
        reasons: list[str] = []

        async def gone(*reason: Any) -> None:
            reasons.append(str(reason[0]) if reason else "")

        client.on("disconnect", gone, namespace="/conversations")
        await client.connect(
            f"{stack.http_url}?token={token('ana', acme)}",
            transports=["websocket"],
            namespaces=["/conversations"],
            wait_timeout=10,
        )
        put(stack, "Disconnect", {"companyId": acme, "userId": "ana"})
        async with asyncio.timeout(AT_ONCE):
            while not reasons:
                await asyncio.sleep(0.02)
        assert reasons == ["server disconnect"]
        await asyncio.sleep(1.5)
        assert not client.connected
        await client.disconnect()

    run(scenario())


# ---- revoke ----


def test_revoked_tokens_are_refused_at_the_handshake_and_auth_refresh_and_fresh_ones_accepted(
    stack: RunningStack,
) -> None:
    async def scenario() -> None:
        acme = company()
        now = int(time.time())
        old = token("ana", acme, issued_at=now - 60)
        bens = token("ben", acme, issued_at=now - 60)
        ben = await open_with(stack, bens)
        ana = await open_with(stack, old)
        issued_before = datetime.fromtimestamp(now - 10, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        put(stack, "RevokeTokens", {"companyId": acme, "userId": "ana", "issuedBefore": issued_before})
        frames = await closed(ana, timeout=AT_ONCE)
        assert frames[-1] == {"event": "disconnect", "data": {"reason": "revoked"}}
        assert (await ben.next("status:offline", timeout=AT_ONCE))["data"] == {"userId": "ana"}

        for refused in (old, token("ana", acme)):  # issued before, and no iat at all
            with pytest.raises(InvalidStatus) as handshake:
                await open_with(stack, refused)
            assert handshake.value.response.status_code == 403
        fresh = await open_with(stack, token("ana", acme, issued_at=now))
        assert await fresh.ok("ping")
        await fresh.send("auth:refresh", {"token": old}, ack_id="r")
        refresh = await fresh.next("ack")
        assert (refresh["ok"], refresh["error"]["code"]) == (False, "unauthorized")
        # Another user's token of the same age is untouched.
        assert (await ben.ok("auth:refresh", {"token": bens}))["exp"] > now
        again = await open_with(stack, bens)
        assert await again.ok("ping")
        for client in (fresh, ben, again):
            await client.close()

    run(scenario())


# ---- the local SQS, as a boto3 client sees it ----


def test_the_local_sqs_holds_a_message_for_its_delay(stack: RunningStack) -> None:
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.http_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    # The dead-letter queue: no function polls it.
    url = sqs.get_queue_url(QueueName="DelayDeadLetterQueue")["QueueUrl"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello", DelaySeconds=1)
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    time.sleep(1.2)
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert (message["MessageId"], message["Body"]) == (sent["MessageId"], "hello")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="NoSuchQueue")
