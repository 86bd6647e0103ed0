"""Both emitters against `roomcast serve`: the real boto3 and @aws-sdk/client-eventbridge clients put events on the
local stack's EventBridge, and WebSocket clients receive what they pushed; a bad event raises and nothing arrives."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from roomcast_emitter import Emitter, FrameTooLarge, InvalidEvent
from roomcast_local.testing import RunningStack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _events(stack: RunningStack) -> Any:
    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    return session.client("events", endpoint_url=stack.http_url, config=Config(retries={"max_attempts": 1}))


async def _clients(stack: RunningStack) -> tuple[str, Client, Client, Client, str]:
    """Two colleagues of a fresh company (ana in a new conversation) and a user of another company."""
    acme = company()
    ana = await Client.open(stack.ws_url, "ana", acme)
    ben = await Client.open(stack.ws_url, "ben", acme)
    outsider = await Client.open(stack.ws_url, "ana", company())
    # The first actions may each start a function's worker: on a loaded machine that outlasts the usual 5 s.
    await ana.send("conversation:create", {}, ack_id="create")
    created = await ana.next("ack", timeout=60)
    assert created["ok"], created
    conversation = created["data"]["conversation"]["id"]
    await ana.send("analytics:subscribe", ack_id="subscribe")
    assert (await ana.next("ack", timeout=60))["ok"]
    await asyncio.sleep(0.2)
    await ben.silent(0.2)
    return acme, ana, ben, outsider, conversation


def test_the_python_emitter_reaches_websocket_clients(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme_id, ana, ben, outsider, conversation = await _clients(stack)
        acme = Emitter(_events(stack), source="crm.python").company(acme_id)

        for bad in (
            lambda: acme.to("team:7").emit("deal:won", {}),
            lambda: acme.to(f"company:{acme_id}").emit("message:new", {"content": "fake"}),
            lambda: acme.notify(user_id="ana", type="task", title=""),
        ):
            with pytest.raises(InvalidEvent):
                bad()
        with pytest.raises(FrameTooLarge):
            acme.to("user:ben").emit("deal:won", {"big": "x" * 140_000})

        await asyncio.to_thread(acme.to(f"company:{acme_id}").to("user:ben").emit, "deal:won", {"amount": 1})
        # (The first event may start the bus target's worker: the same allowance as the first actions.)
        assert [(await ben.next("deal:won", timeout=60))["data"] for _ in range(2)] == [{"amount": 1}] * 2
        assert (await ana.next("deal:won"))["namespace"] == "/conversations"
        await asyncio.to_thread(acme.to(f"analytics:{acme_id}").emit, "report:ready", {"url": "https://x"})
        assert (await ana.next("report:ready"))["namespace"] == "/analytics"

        await asyncio.to_thread(acme.notify, user_id="ana", type="task", title="From Python")
        assert (await ana.next("notification:new"))["data"]["notification"]["title"] == "From Python"
        await asyncio.to_thread(acme.lead_assigned, lead_id="l-1", assignee_user_id="ana")
        assert (await ana.next("notification:new"))["data"]["notification"]["type"] == "lead:assigned"
        await asyncio.to_thread(
            acme.message_received, conversation_id=conversation, contact_id="ct-1", content="hola", external_id="wa-1"
        )
        received = (await ana.next("message:new"))["data"]
        assert (received["senderType"], received["content"], received["externalId"]) == ("contact", "hola", "wa-1")
        await asyncio.to_thread(acme.campaign_started, campaign_id="k-1", name="Spring")
        assert (await ben.next("campaign:started"))["data"] == {"campaignId": "k-1", "name": "Spring"}
        await asyncio.to_thread(acme.contact_tagged, conversation_id=conversation, contact_id="ct-1", tag="vip")
        assert (await ana.next("contact:tagged"))["data"]["tag"] == "vip"

        assert await outsider.silent(0.5) == []
        # Nothing of the refused events arrived either.
        assert [frame["event"] for frame in await ben.silent(0.3)] == []
        for client in (ana, ben, outsider):
            await client.close()

    asyncio.run(scenario())


def test_the_typescript_emitter_reaches_websocket_clients(stack: RunningStack) -> None:
    assert (ROOT / "emitters" / "typescript" / "dist" / "src" / "index.js").exists(), "run `make typescript` first"

    async def scenario() -> None:
        acme_id, ana, ben, outsider, conversation = await _clients(stack)
        argument = json.dumps({"endpoint": stack.http_url, "companyId": acme_id, "conversationId": conversation})
        done = await asyncio.to_thread(
            subprocess.run,
            ["node", str(ROOT / "tests" / "e2e" / "typescript_emitter.cjs"), argument],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["refused"] == ["room of no kind", "roomcast's own event", "title missing", "too large"]
        assert result["sentBeforeGood"] == 0, "a refused event was sent"
        assert result["sent"] == 6
        assert len(result["ids"]["emit"]) == 2

        assert [(await ben.next("deal:won", timeout=60))["data"] for _ in range(2)] == [{"amount": 2}] * 2
        # EventBridge keeps no order between events: the Notify and the LeadAssigned's notification, either way.
        notified = {
            notification["type"]: notification
            for notification in [(await ana.next("notification:new"))["data"]["notification"] for _ in range(2)]
        }
        assert notified["task"]["title"] == "From TypeScript"
        lead = notified["lead:assigned"]["data"]
        assert lead == {"leadId": "l-ts", "conversationId": conversation}
        assert (await ana.next("message:new"))["data"]["content"] == "hola from ts"
        assert (await ben.next("campaign:started"))["data"] == {"campaignId": "k-ts", "name": "Autumn"}
        assert (await ana.next("contact:tagged"))["data"] == {
            "conversationId": conversation,
            "contactId": "ct-ts",
            "tag": "vip",
        }
        assert await outsider.silent(0.5) == []
        for client in (ana, ben, outsider):
            await client.close()

    asyncio.run(scenario())
