"""End to end through the local stack (`roomcast serve` in its own process) with real WebSocket clients.

- 200 clients in 20 companies, one conversation of 10 each, sending 20 messages/s in all (each client one
  every 10 s): connect latency, and delivery latency from a send to the last member's `message:new`;
- the same at rising rates, to find the highest rate whose delivery p99 stays under 100 ms (the saturation
  rate), for the concurrent stack and for `--serial`;
- 1000 connections held open for 60 s: how many dropped, and the stack's memory per connection.

The concurrent stack starts two workers per function ahead (`--warm 2`, decision 0044), so its figures are
steady-state ones; cold starts have their own table.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from roomcast_local.environment import mint_token
from roomcast_local.testing import DEVELOPMENT_SECRET, RunningStack, start_stack

SECRET = DEVELOPMENT_SECRET
COMPANIES, MEMBERS = 20, 10
HOLD_CONNECTIONS, HOLD_SECONDS = 1000, 60
STEADY_RATE, STEADY_SECONDS = 20.0, 20.0
SATURATION_RATES = (2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0)
STEP_SECONDS = 5.0
OPEN_TIMEOUT, DRAIN_SECONDS = 60.0, 120.0
SATURATED_P99_MS = 100.0
OVERLOADED_P50_MS = 1000.0  # the queue grows for the whole step: higher rates only take longer to drain
CONCURRENT, SERIAL = ("--warm", "2"), ("--serial",)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else 0.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Member:
    def __init__(self, ws: ClientConnection, index: int) -> None:
        self.ws = ws
        self.index = index


class Room:
    """One company's conversation: delivery completes when all its members have the message."""

    def __init__(self, members: list[Member], conversation: str) -> None:
        self.members = members
        self.conversation = conversation
        self.pending: dict[str, tuple[float, set[int]]] = {}
        self.latencies: list[float] = []

    def heard(self, member: Member, content: str) -> None:
        if content not in self.pending:
            return
        sent, waiting = self.pending[content]
        waiting.discard(member.index)
        if not waiting:
            self.latencies.append((time.perf_counter() - sent) * 1000)
            del self.pending[content]

    async def send(self, sender: Member) -> None:
        content = uuid.uuid4().hex
        self.pending[content] = (time.perf_counter(), {member.index for member in self.members})
        frame = {"action": "message:send", "data": {"conversationId": self.conversation, "content": content}}
        await sender.ws.send(json.dumps(frame))


async def listen(room: Room, member: Member) -> None:
    async for raw in member.ws:
        frame = json.loads(raw)
        if frame.get("event") == "message:new":
            room.heard(member, frame["data"]["content"])


async def open_client(url: str, user: str, company: str, timings: list[float] | None = None) -> ClientConnection:
    token = mint_token(user, company, None, 3600, SECRET)
    started = time.perf_counter()
    # Under --serial a handshake waits for every invocation queued before its authorizer's.
    ws = await connect(f"{url}?token={token}", max_size=None, open_timeout=OPEN_TIMEOUT)
    if timings is not None:
        timings.append((time.perf_counter() - started) * 1000)
    return ws


async def ack(ws: ClientConnection, action: str, data: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"action": action, "data": data, "ackId": "a"}))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("event") == "ack":
            result: dict[str, Any] = frame["data"]
            return result


async def build_rooms(url: str, connect_ms: list[float]) -> list[Room]:
    rooms = []
    for company_index in range(COMPANIES):
        company = f"bench-{company_index}-{uuid.uuid4().hex[:6]}"
        sockets = [await open_client(url, f"agent-{i}", company, connect_ms) for i in range(MEMBERS)]
        conversation = (await ack(sockets[0], "conversation:create", {}))["conversation"]["id"]
        for ws in sockets[1:]:
            await ack(ws, "join:conversation", {"conversationId": conversation})
        rooms.append(Room([Member(ws, index) for index, ws in enumerate(sockets)], conversation))
    return rooms


async def drive(rooms: list[Room], rate: float, seconds: float) -> tuple[list[float], float]:
    """Send at `rate` messages/s in all, round-robin over clients; returns delivery latencies and the rate achieved."""
    for room in rooms:
        room.latencies.clear()
    senders = [
        (room, member) for member_index in range(MEMBERS) for room in rooms for member in [room.members[member_index]]
    ]
    total = int(rate * seconds)
    started = time.perf_counter()
    for count in range(total):
        room, member = senders[count % len(senders)]
        await room.send(member)
        delay = started + (count + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    elapsed = time.perf_counter() - started
    deadline = time.perf_counter() + DRAIN_SECONDS
    while any(room.pending for room in rooms) and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)  # let the queue drain, so the next step starts clean
    for room in rooms:
        room.pending.clear()
    return [latency for room in rooms for latency in room.latencies], total / elapsed


async def hold(url: str, pid: int) -> tuple[int, int, float]:
    before = rss_kb(pid)
    sockets: list[ClientConnection] = []
    for index in range(HOLD_CONNECTIONS):
        sockets.append(await open_client(url, f"held-{index % 10}", f"hold-{index // 10}"))
    await asyncio.sleep(2)
    per_connection = (rss_kb(pid) - before) / HOLD_CONNECTIONS
    await asyncio.sleep(HOLD_SECONDS)
    dropped = sum(1 for ws in sockets if ws.close_code is not None)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return len(sockets) - dropped, dropped, per_connection


async def sweep(rooms: list[Room]) -> list[dict[str, float]]:
    """Delivery latency at rising rates, up to and including the first at which the stack is overloaded."""
    points = []
    for rate in SATURATION_RATES:
        step, _ = await drive(rooms, rate, STEP_SECONDS)
        sent = int(rate * STEP_SECONDS)
        point = {
            "rate": rate,
            "p50_ms": round(percentile(step, 0.5), 2),
            "p99_ms": round(percentile(step, 0.99), 2),
            "delivered": len(step),
            "sent": sent,
        }
        points.append(point)
        print(f"  e2e {rate}/s: p50 {point['p50_ms']} ms p99 {point['p99_ms']} ms ({len(step)}/{sent})", flush=True)
        if point["p50_ms"] >= OVERLOADED_P50_MS or point["delivered"] < 0.5 * sent:
            break
    return points


def keeps_up(point: dict[str, float]) -> bool:
    return point["p99_ms"] < SATURATED_P99_MS and point["delivered"] >= 0.9 * point["sent"]


def saturation(points: list[dict[str, float]]) -> float:
    """The highest rate of the sweep before the first one the stack could not keep up with."""
    rate = 0.0
    for point in points:
        if not keeps_up(point):
            break
        rate = point["rate"]
    return rate


async def steady_and_sweep(stack: RunningStack) -> dict[str, Any]:
    connect_ms: list[float] = []
    rooms = await build_rooms(stack.ws_url, connect_ms)
    listeners = [asyncio.ensure_future(listen(room, member)) for room in rooms for member in room.members]
    # The sweep first: a steady rate the stack cannot keep up with leaves a queue behind it.
    points = await sweep(rooms)
    latencies, achieved = await drive(rooms, STEADY_RATE, STEADY_SECONDS)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(f"  e2e steady {STEADY_RATE}/s: p50 {p50:.1f} ms p99 {p99:.1f} ms", flush=True)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(member.ws.close() for room in rooms for member in room.members))
    return {
        "clients": COMPANIES * MEMBERS,
        "connect_p50_ms": round(percentile(connect_ms, 0.5), 2),
        "connect_p99_ms": round(percentile(connect_ms, 0.99), 2),
        "delivery_p50_ms": round(percentile(latencies, 0.5), 2),
        "delivery_p99_ms": round(percentile(latencies, 0.99), 2),
        "msgs_per_s": round(achieved, 2),
        "saturation_msgs_per_s": saturation(points),
        "delivery_mean_ms": round(statistics.fmean(latencies), 2) if latencies else 0.0,
        "sweep": points,
    }


async def concurrent_scenario(stack: RunningStack) -> dict[str, Any]:
    figures = await steady_and_sweep(stack)
    held, dropped, per_connection = await hold(stack.ws_url, stack.process.pid)
    return figures | {"rss_per_connection_kb": round(per_connection, 1), "held_connections": held, "dropped": dropped}


async def serial_scenario(stack: RunningStack) -> dict[str, Any]:
    connect_ms: list[float] = []
    rooms = await build_rooms(stack.ws_url, connect_ms)
    listeners = [asyncio.ensure_future(listen(room, member)) for room in rooms for member in room.members]
    points = await sweep(rooms)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*(member.ws.close() for room in rooms for member in room.members))
    return {"saturation_msgs_per_s": saturation(points), "sweep": points}


Scenario = Callable[[RunningStack], Coroutine[Any, Any, dict[str, Any]]]


def _against(arguments: tuple[str, ...], scenario: Scenario) -> dict[str, Any]:
    stack = start_stack(*arguments)
    try:
        return asyncio.run(scenario(stack))
    finally:
        # Killed, not stopped: after saturation its queue of invocations can take minutes to drain.
        stack.process.kill()
        stack.process.wait()


def run() -> dict[str, Any]:
    print("  the concurrent stack (--warm 2)", flush=True)
    concurrent: dict[str, Any] = _against(CONCURRENT, concurrent_scenario)
    print("  the serial stack (--serial)", flush=True)
    serial: dict[str, Any] = _against(SERIAL, serial_scenario)
    sweeps = {"concurrent": concurrent.pop("sweep"), "serial": serial["sweep"]}
    return concurrent | {"serial_saturation_msgs_per_s": serial["saturation_msgs_per_s"], "sweeps": sweeps}
