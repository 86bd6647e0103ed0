"""A room of 10,000 (issue 14, item 4): the sender's reply time, and the time until the last member has the event.

The sender's `message:send` runs through the real handlers against moto, every DynamoDB call delayed 5 ms (as
bench.latency does); past the large-room threshold it hands the room off. The hand-off then runs as AWS would run
it: one deferred invocation reads the room (moto) and splits it into chunks, and each chunk runs in a worker
process of its own, a warm Lambda container with roomcast's own sending code (shared.delivery.management_api),
posting to the 20 ms stand-in (bench.management_stub) over real sockets. Each budget claim costs a 5 ms round trip
(a stand-in for the DynamoDB counter: the workers of this bench share no DynamoDB), at a budget no chunk reaches.
The room's memberships are read from memory, 5 ms a page of at most 1 MB as DynamoDB pages them: moto reads a
partition of 10,000 items in seconds of CPU, which would measure moto, not the hand-off.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

os.environ.setdefault("LARGE_ROOM_THRESHOLD", "500")
os.environ.setdefault("BROADCAST_CHUNK", "500")

import boto3

from bench.calls import bench_world
from bench.latency import SlowDynamoDb
from roomcast_local.testing import Peer, RecordingGateway, deferrer
from shared.delivery.deferred import BroadcastChunk, RoomBroadcast
from shared.delivery.hub import FanoutReport, Hub
from shared.delivery.large_rooms import LargeRooms
from shared.protocol.clock import SystemClock
from shared.protocol.codec import Codec
from shared.protocol.rooms import Room, conversation_room
from shared.stores.rooms import Member, RoomReader
from shared.wiring import services as runtime

ROOM = 10_000
CLAIM_S = 0.005
PAGE_S = 0.005
# A membership read with its projection (sk, codec) is about 30 bytes: a 1 MB page holds all 10,000.
PAGE_ITEMS = 30_000
_worker: dict[str, Any] = {}


class RoundTripBudget:
    """Grants every claim after one DynamoDB-like round trip: what a claim costs when the budget is not reached."""

    per_second = 1_000_000

    def take(self, _company_id: str, wanted: int, _now: datetime) -> int:
        time.sleep(CLAIM_S)
        return wanted


class RoomInMemory:
    """`RoomReader.members` for the bench's room: its pages from memory at a DynamoDB round trip each."""

    def __init__(self, room_key: str, members: list[str]) -> None:
        self.room_key = room_key
        self.members = [Member(connection_id, Codec.NATIVE) for connection_id in members]
        self.queried = RoomReader.members

    def as_method(self) -> Callable[..., Iterator[list[Member]]]:
        def members(store: RoomReader, company_id: str, room: Room, page_size: int | None = None) -> Any:
            return self.pages(store, company_id, room, page_size)

        return members

    def pages(
        self, store: RoomReader, company_id: str, room: Room, page_size: int | None = None
    ) -> Iterator[list[Member]]:
        if room.key(company_id) != self.room_key:
            yield from self.queried(store, company_id, room, page_size)
            return
        size = min(page_size or PAGE_ITEMS, PAGE_ITEMS)
        for start in range(0, len(self.members), size):
            time.sleep(PAGE_S)
            yield self.members[start : start + size]


def _start_worker(url: str, concurrency: int) -> None:
    from shared.delivery.management_api import ManagementApi

    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    credentials = session.get_credentials()
    assert credentials is not None
    client = session.client("apigatewaymanagementapi", endpoint_url=url)
    sender = ManagementApi(url, "us-east-1", credentials, concurrency, client)
    sender.post_many([f"warm-{index}" for index in range(concurrency)], b"{}")  # a warm container's connections
    clock = SystemClock()
    hub = Hub(None, sender, None, 1 << 17, clock)  # type: ignore[arg-type]
    _worker["large_rooms"] = LargeRooms(None, hub, None, RoundTripBudget(), clock, chunk=0, batch=concurrency)  # type: ignore[arg-type]


def _post_chunk(payload: dict[str, Any]) -> tuple[float, float, int]:
    """One chunk worker's invocation: when it finished (perf_counter is one clock for every process), the CPU
    seconds it spent, and how many members it delivered to."""
    cpu = time.process_time()
    large_rooms: LargeRooms = _worker["large_rooms"]
    report: FanoutReport = large_rooms.post(BroadcastChunk.model_validate(payload))
    return time.perf_counter(), time.process_time() - cpu, report.delivered


def _warm(_: int) -> bool:
    time.sleep(0.2)  # long enough that each process of the pool takes one
    return "large_rooms" in _worker


def run() -> dict[str, float]:
    stub = subprocess.Popen([sys.executable, "-m", "bench.management_stub"], stdout=subprocess.PIPE, text=True)
    try:
        assert stub.stdout is not None
        url = f"http://127.0.0.1:{stub.stdout.readline().strip()}/prod"
        return _measure(url)
    finally:
        stub.kill()


def _measure(url: str) -> dict[str, float]:
    concurrency = int(os.environ.get("FANOUT_CONCURRENCY", "96"))
    workers = math.ceil(ROOM / int(os.environ["BROADCAST_CHUNK"]))
    gateway = RecordingGateway()
    with (
        ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(url, concurrency)) as pool,
        bench_world(gateway, hook=SlowDynamoDb) as _,
    ):
        assert all(pool.map(_warm, range(workers)))
        queued = deferrer()
        queued.auto = False
        sender = Peer(gateway, "sender", "sender", "acme").connect()
        conversation = sender.ok("conversation:create", {})["conversation"]["id"]
        room = RoomInMemory(
            conversation_room(conversation).key("acme"),
            [sender.connection_id, *(f"conn-{index:05d}" for index in range(ROOM - 1))],
        )
        RoomReader.members = room.as_method()  # type: ignore[method-assign]
        queued.take()
        started = time.perf_counter()
        sender.ok("message:send", {"conversationId": conversation, "content": "hi"})
        replied = time.perf_counter()
        (handed,) = [task for task in queued.take() if isinstance(task, RoomBroadcast)]
        large_rooms = runtime.services().large_rooms
        split_started = time.perf_counter()
        large_rooms.split(handed)
        chunks = [task for task in queued.take() if isinstance(task, BroadcastChunk)]
        split = time.perf_counter() - split_started
        outcomes = list(pool.map(_post_chunk, [chunk.model_dump(by_alias=True, mode="json") for chunk in chunks]))
        RoomReader.members = room.queried  # type: ignore[method-assign]
    last = max(finished for finished, _, _ in outcomes)
    delivered = sum(count for _, _, count in outcomes)
    cpu_per_post_ms = sum(cpu for _, cpu, _ in outcomes) / delivered * 1000
    total_concurrency = workers * concurrency
    figures = {
        "room": ROOM,
        "chunks": len(chunks),
        "delivered": delivered,
        "reply_ms": round((replied - started) * 1000, 1),
        "split_ms": round(split * 1000, 1),
        "to_last_recipient_ms": round((last - started) * 1000, 1),
        "total_concurrency": total_concurrency,
        "goal_ms": round(1.5 * math.ceil(ROOM / total_concurrency) * 20, 1),
        "worker_cpu_ms_per_post": round(cpu_per_post_ms, 3),
        "worker_cpu_s_median": round(statistics.median(cpu for _, cpu, _ in outcomes), 3),
        "cores": os.cpu_count() or 1,
    }
    print(f"  large room: {figures}", flush=True)
    return figures
