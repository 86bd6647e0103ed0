"""A `message:send`'s path to its first post (decision 0047): its reads run together with the rate limit,
so at most two DynamoDB round trips come one after another before the first post; and a refused send has
written nothing, whatever its reads found."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from roomcast_local.testing import ManualClock, Peer
from shared.delivery.management_api import Delivery
from shared.wiring.services import Services
from tests.conftest import CallCounter

# Long against moto's own time per call and a busy machine's thread scheduling, so calls that overlap are
# told apart from calls in a row.
DYNAMODB_DELAY = 0.2


class Timeline:
    """When each DynamoDB call ran, and when the first post went out, once armed. Registered on the session
    before the services make their clients, which copy the session's handlers when they are made."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.armed = False
        self.calls: list[tuple[float, float]] = []
        # The client of each call, as its request signer (one per client) tells.
        self.clients: list[int] = []
        self.first_post: float | None = None
        self._started = threading.local()
        self._lock = threading.Lock()
        session.events.register("before-call.dynamodb", self._before)
        session.events.register("after-call.dynamodb", self._after)

    def _before(self, request_signer: object, **_: Any) -> None:
        if self.armed:
            self._started.at = time.monotonic()
            self._started.client = id(request_signer)
            time.sleep(DYNAMODB_DELAY)

    def _after(self, **_: Any) -> None:
        if not self.armed:
            return
        with self._lock:
            self.calls.append((self._started.at, time.monotonic()))
            self.clients.append(self._started.client)

    def posted(self) -> None:
        with self._lock:
            if self.first_post is None:
                self.first_post = time.monotonic()

    def overlapping_calls_on_one_client(self) -> list[tuple[int, int]]:
        """Pairs of calls that ran at the same time through the same client (a boto3 resource's client
        shares one condition builder between its calls)."""
        return [
            (first, second)
            for first in range(len(self.calls))
            for second in range(first + 1, len(self.calls))
            if self.clients[first] == self.clients[second]
            and self.calls[first][0] < self.calls[second][1]
            and self.calls[second][0] < self.calls[first][1]
        ]

    def round_trips_in_a_row_before_the_first_post(self) -> int:
        """The longest chain of calls, each begun after the one before it ended (earliest end first)."""
        assert self.first_post is not None
        chain, free_from = 0, float("-inf")
        for start, end in sorted((call for call in self.calls if call[1] <= self.first_post), key=lambda c: c[1]):
            if start >= free_from:
                chain, free_from = chain + 1, end
        return chain


@pytest.fixture
def timeline(session: boto3.session.Session) -> Timeline:
    return Timeline(session)


@pytest.fixture
def room(timeline: Timeline, services: Services, gateway: Any) -> tuple[Peer, Peer, str]:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    conversation: str = ana.ok("conversation:create", {"subject": "path"})["conversation"]["id"]
    ben.ok("join:conversation", {"conversationId": conversation})
    # The first send makes the readers' clients and the pool's threads: the measured one finds them made.
    ana.ok("message:send", {"conversationId": conversation, "content": "warm"})
    return ana, ben, conversation


@pytest.fixture
def paused(clock: ManualClock) -> datetime:
    """Every action from now on sees one instant, later than anything the room's setup did: each connection
    starts idle (admitted in one UpdateItem), and a burst at that instant exhausts its rate."""
    instant = clock.now() + timedelta(seconds=10)
    clock.set(instant)
    return instant


def test_a_send_makes_at_most_three_dynamodb_round_trips_in_a_row_before_its_first_post(
    room: tuple[Peer, Peer, str], paused: datetime, timeline: Timeline, gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana, ben, conversation = room
    post_many = gateway.post_many

    def timed_post_many(connection_ids: Sequence[str], data: bytes) -> list[Delivery]:
        timeline.posted()
        deliveries: list[Delivery] = post_many(connection_ids, data)
        return deliveries

    monkeypatch.setattr(gateway, "post_many", timed_post_many)
    timeline.armed = True
    ana.ok("message:send", {"conversationId": conversation, "content": "fast"})
    assert [frame["data"]["content"] for frame in ben.received("message:new")] == ["warm", "fast"]
    # The rate limit (one UpdateItem for a connection within its rate) beside the conversation and members
    # reads; then the seq's reservation (a write: only once admitted, decision 0087) and the message's PutItem.
    assert timeline.round_trips_in_a_row_before_the_first_post() == 3
    assert timeline.overlapping_calls_on_one_client() == []


def test_a_refused_send_answers_the_refusal_not_what_its_reads_found(
    room: tuple[Peer, Peer, str], paused: datetime
) -> None:
    ana, _, _ = room
    while ana.act("ping")["ok"]:
        pass
    assert ana.error("message:send", {"conversationId": "no-such-conversation", "content": "x"}) == "rate_limited"


def test_a_refused_send_writes_nothing_and_tells_no_one(
    room: tuple[Peer, Peer, str], paused: datetime, calls: CallCounter
) -> None:
    ana, ben, conversation = room
    while ana.act("ping")["ok"]:
        pass
    calls.reset()
    assert ana.error("message:send", {"conversationId": conversation, "content": "refused"}) == "rate_limited"
    writes = {name for name in calls.calls if name.split(".")[1] in {"PutItem", "TransactWriteItems"}}
    assert writes == set()
    assert [frame["data"]["content"] for frame in ben.received("message:new")] == ["warm"]
    history = ben.ok("conversation:history", {"conversationId": conversation})["messages"]
    assert [message["content"] for message in history] == ["warm"]
