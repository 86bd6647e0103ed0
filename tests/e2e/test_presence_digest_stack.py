"""Presence digests end to end (docs/protocol.md): `roomcast serve` started as a developer would with
PRESENCE_DIGEST_THRESHOLD=5, real WebSocket clients. Past 5 users online a company hears `presence:changed`
digests, which travel through the local stack's SQS delay queue; a small company in the same stack still hears
`status:online` / `status:offline` within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from roomcast_local.testing import RunningStack, start_stack, stop_stack
from tests.e2e.client import Client, company

pytestmark = pytest.mark.e2e
THRESHOLD = 5


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    running = start_stack(
        environment={
            "PRESENCE_DIGEST_THRESHOLD": str(THRESHOLD),
            "PRESENCE_POSTS_PER_SECOND": "500",
            # Offline at once: the digest's offline list is the close's, not a grace's end.
            "PRESENCE_GRACE_SECONDS": "0",
        }
    )
    yield running
    stop_stack(running)


def test_past_the_threshold_a_company_hears_digests_and_a_small_one_hears_each_change(stack: RunningStack) -> None:
    async def scenario() -> None:
        acme, small = company(), company()
        watcher = await Client.open(stack.ws_url, "u0", acme)
        others = []
        # Up to the threshold, each user's first connection is announced on its own, in order.
        for index in range(1, THRESHOLD):
            others.append(await Client.open(stack.ws_url, f"u{index}", acme))
            assert (await watcher.next("status:online", timeout=10))["data"] == {"userId": f"u{index}"}
        # The sixth user online: a digest, not a status:online.
        opened = time.monotonic()
        sixth = await Client.open(stack.ws_url, "u5", acme)
        digest = await watcher.next("presence:changed", timeout=10)
        assert digest["namespace"] == "/conversations"
        assert digest["data"] == {"online": ["u5"], "offline": []}
        assert time.monotonic() - opened >= 0.5  # held for the digest's interval (1 s), not sent at once
        assert (await sixth.next("presence:changed", timeout=5))["data"] == digest["data"]
        # A user who comes and one who goes within one interval: one digest with both.
        seventh = await Client.open(stack.ws_url, "u6", acme)
        await others[0].close()
        both = await watcher.next("presence:changed", timeout=10)
        if both["data"] != {"online": ["u6"], "offline": ["u1"]}:
            # The close may have landed after the first of the two digests was closed: then it is the next.
            later = await watcher.next("presence:changed", timeout=10)
            assert [both["data"], later["data"]] == [
                {"online": ["u6"], "offline": []},
                {"online": [], "offline": ["u1"]},
            ]
        assert [f for f in await watcher.silent(1.5) if str(f.get("event", "")).startswith("status:")] == []

        # The small company in the same stack: status:online and status:offline, each within a second.
        ana = await Client.open(stack.ws_url, "ana", small)
        ben = await Client.open(stack.ws_url, "ben", small)
        began = time.monotonic()
        assert (await ana.next("status:online", timeout=5))["data"] == {"userId": "ben"}
        assert time.monotonic() - began < 1
        await ben.close()
        began = time.monotonic()
        assert (await ana.next("status:offline", timeout=5))["data"] == {"userId": "ben"}
        assert time.monotonic() - began < 1
        assert [f for f in await ana.silent(1.5) if f.get("event") == "presence:changed"] == []

        for client in (watcher, *others[1:], sixth, seventh, ana):
            await client.close()

    asyncio.run(scenario())
