"""`make bench`: runs every measurement and writes bench/results.json, docs/performance.md and docs/fanout.png.

`python -m bench PIECE...` (pieces: fanout, calls, latency, large_room, cold_start, e2e, cpu, hot_conversation,
presence_capacity, capacity, hot_keys) runs only those and keeps the other figures of bench/results.json as they were.
`capacity` is a key several pieces write into (issue 23): each piece's keys are merged into it, not put in its place."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import (
    calls,
    capacity,
    cold_start,
    costs,
    cpu,
    e2e,
    fanout,
    hot_conversation,
    hot_keys,
    large_room,
    latency,
    presence_capacity,
    report,
)


def _calls(_results: dict[str, Any]) -> dict[str, Any]:
    call_counts, items_read = calls.run()
    return {"calls": call_counts, "items_read": items_read}


def _cold_start(_results: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = cold_start.run()
    return {**figures, "cold_start_load_average_1m": round(os.getloadavg()[0], 2)}


# In the order `make bench` runs them. Fan-out first, in a small heap: after moto's tables, garbage collection
# alone doubles its CPU per post; the CPU figures next, for the same reason.
# Each is given the results so far (capacity reads the large room's CPU per post).
PIECES: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "fanout": ("fan-out against the 20 ms stand-in", lambda _results: {"fanout": fanout.run()}),
    "cpu": ("CPU per post and per message:send (moto in its own process)", lambda _results: {"cpu": cpu.run()}),
    "calls": ("calls per operation (moto)", _calls),
    "latency": ("path to delivery, 5 ms DynamoDB and 20 ms posts", lambda _results: {"latency": latency.run()}),
    "large_room": ("a room of 10,000", lambda _results: {"large_room": large_room.run()}),
    "cold_start": ("cold starts", _cold_start),
    "e2e": ("end to end through the local stack", lambda _results: {"e2e": e2e.run()}),
    "hot_conversation": (
        "one hot conversation, 5 ms and 1,000 write units a second per key",
        lambda _results: hot_conversation.run(),
    ),
    "presence_capacity": (
        "presence at company scale (simulated time, moto)",
        lambda _results: presence_capacity.run(),
    ),
    "capacity": (
        "capacity: the storm's share of Lambda, the heartbeat's reach (moto, simulated time)",
        lambda results: {"capacity": capacity.run(results)},
    ),
    "hot_keys": (
        "DynamoDB units per partition key per second (moto)",
        lambda _results: {"capacity": hot_keys.run()},
    ),
}
# Keys several pieces add to: merged, not replaced.
MERGED = ("capacity",)


def merge(results: dict[str, Any], figures: dict[str, Any]) -> None:
    """A piece's figures into the results: a MERGED key keeps what other pieces wrote into it."""
    for key, value in figures.items():
        if key in MERGED and isinstance(results.get(key), dict) and isinstance(value, dict):
            results[key] = {**results[key], **value}
        else:
            results[key] = value


def main(chosen: list[str]) -> None:
    unknown = [name for name in chosen if name not in PIECES]
    if unknown:
        raise SystemExit(f"unknown bench pieces {unknown}; choose from {list(PIECES)}")
    started = time.perf_counter()
    results: dict[str, Any] = json.loads(report.RESULTS.read_text()) if chosen else {}
    for name, (title, piece) in PIECES.items():
        if not chosen or name in chosen:
            print(f"{title} ...", flush=True)
            merge(results, piece(results))
    results.pop("costs", None)
    results["costs"] = costs.model(results)
    report.write(results)
    print(f"done in {time.perf_counter() - started:.0f} s: bench/results.json, docs/performance.md, docs/fanout.png")


if __name__ == "__main__":
    main(sys.argv[1:])
