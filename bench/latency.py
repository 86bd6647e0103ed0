"""The path to delivery of a `message:send` (issue 14, item 2): every DynamoDB call delayed 5 ms and every
`@connections` post 20 ms, as in AWS, the real handlers run against moto; the time from invocation to the last
post for a room of 10, and how many DynamoDB round trips run one after another before the first post."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import boto3

from bench.calls import TABLES, bench_world
from roomcast_local.testing import Peer, RecordingGateway
from shared.delivery.management_api import Delivery
from shared.protocol.rooms import conversation_room

DYNAMODB_S = 0.005
POST_S = 0.020
ROOM = 10
RUNS = 30


class SlowGateway(RecordingGateway):
    """Each `post_many` (posts sent together, as the real sender does) answers after 20 ms."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = POST_S
        self.posts: list[tuple[float, float]] = []

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> list[Delivery]:
        started = time.perf_counter()
        time.sleep(self.delay)
        deliveries = super().post_many(connection_ids, data)
        self.posts.append((started, time.perf_counter()))
        return deliveries


class SlowDynamoDb:
    """A botocore hook that holds every DynamoDB request for 5 ms before it is sent, and the calls' intervals."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.delay = DYNAMODB_S
        self.calls: list[tuple[float, float]] = []
        self._started = threading.local()
        session.events.register("before-call.dynamodb", self._before)
        session.events.register("before-send.dynamodb", self._send)
        session.events.register("after-call.dynamodb", self._after)

    def _before(self, **_: Any) -> None:
        self._started.at = time.perf_counter()

    def _send(self, **_: Any) -> None:
        time.sleep(self.delay)

    def _after(self, **_: Any) -> None:
        self.calls.append((self._started.at, time.perf_counter()))


def in_a_row(calls: list[tuple[float, float]], before: float) -> int:
    """The longest chain of DynamoDB calls, each started after the previous one ended, all ended by `before`:
    calls run together count once."""
    done = sorted(call for call in calls if call[1] <= before)
    depth: list[int] = []
    for index, (start, _) in enumerate(done):
        depth.append(1 + max((depth[j] for j in range(index) if done[j][1] <= start), default=0))
    return max(depth, default=0)


def _measure(delayed: bool) -> dict[str, float]:
    gateway = SlowGateway()
    hooked: list[SlowDynamoDb] = []
    with bench_world(gateway, hook=lambda session: hooked.append(SlowDynamoDb(session))) as _:
        (dynamodb,) = hooked
        sender = Peer(gateway, "sender", "sender", "acme").connect()
        conversation = sender.ok("conversation:create", {})["conversation"]["id"]
        connections = boto3.resource("dynamodb").Table(TABLES["ConnectionsTable"])
        room = conversation_room(conversation).key("acme")
        with connections.batch_writer() as batch:
            for index in range(ROOM - 1):
                batch.put_item(Item={"pk": room, "sk": f"member-{index}", "userId": "member"})
        send = partial(sender.ok, "message:send", {"conversationId": conversation, "content": "hi"})
        send()  # warm: clients built, code loaded, as in a warm container
        dynamodb.delay = DYNAMODB_S if delayed else 0.0
        gateway.delay = POST_S if delayed else 0.0
        to_last, replies, chains = [], [], []
        for _ in range(RUNS):
            dynamodb.calls.clear()
            gateway.posts.clear()
            started = time.perf_counter()
            send()
            replies.append(time.perf_counter() - started)
            to_last.append(max(end for _, end in gateway.posts) - started)
            chains.append(in_a_row(dynamodb.calls, min(start for start, _ in gateway.posts)))
    return {
        "to_last_post_ms": round(statistics.median(to_last) * 1000, 1),
        "reply_ms": round(statistics.median(replies) * 1000, 1),
        # Calls run together may still chain when a thread starts late on a busy machine: the median is the shape.
        "dynamodb_in_a_row_before_first_post": statistics.median(chains),
        "dynamodb_in_a_row_max": max(chains),
    }


def run() -> dict[str, float]:
    """Median over 30 sends to a room of 10, with the delays, and without them (moto and the handlers alone)."""
    delayed = _measure(delayed=True)
    bare = _measure(delayed=False)
    figures = {
        "room": ROOM,
        "dynamodb_delay_ms": DYNAMODB_S * 1000,
        "post_delay_ms": POST_S * 1000,
        **delayed,
        "to_last_post_without_delays_ms": bare["to_last_post_ms"],
        # What AWS's round trips alone put on the path: this machine's CPU (moto's included) left out.
        "round_trips_on_path_ms": delayed["dynamodb_in_a_row_before_first_post"] * DYNAMODB_S * 1000 + POST_S * 1000,
    }
    print(f"  path to delivery: {figures}", flush=True)
    return figures
