"""`make bench`: runs every measurement and writes bench/results.json, docs/performance.md and docs/fanout.png.

`python -m bench PIECE...` (pieces: fanout, calls, latency, large_room, cold_start, e2e, cpu, hot_keys) runs only
those and keeps the other figures of bench/results.json as they were. Pieces share `capacity` (issue 23): each
adds its keys there, and keeps the others'."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import calls, cold_start, costs, cpu, e2e, fanout, hot_keys, large_room, latency, report


def _calls() -> dict[str, Any]:
    call_counts, items_read = calls.run()
    return {"calls": call_counts, "items_read": items_read}


def _cold_start() -> dict[str, Any]:
    ratios, medians = cold_start.run()
    return {"cold_start": ratios, "cold_start_ms": medians}


# In the order `make bench` runs them. Fan-out first, in a small heap: after moto's tables, garbage collection
# alone doubles its CPU per post; the CPU figures next, for the same reason.
PIECES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "fanout": ("fan-out against the 20 ms stand-in", lambda: {"fanout": fanout.run()}),
    "cpu": ("CPU per post and per message:send (moto in its own process)", lambda: {"cpu": cpu.run()}),
    "calls": ("calls per operation (moto)", _calls),
    "latency": ("path to delivery, 5 ms DynamoDB and 20 ms posts", lambda: {"latency": latency.run()}),
    "large_room": ("a room of 10,000", lambda: {"large_room": large_room.run()}),
    "cold_start": ("cold starts", _cold_start),
    "e2e": ("end to end through the local stack", lambda: {"e2e": e2e.run()}),
    "hot_keys": ("DynamoDB units per partition key per second (moto)", lambda: {"capacity": hot_keys.run()}),
}
# Figures several pieces write into, each its own keys.
SHARED = ("capacity",)


def merge(results: dict[str, Any], figures: dict[str, Any]) -> None:
    """Add a piece's figures: a shared section gains its keys (and keeps the other pieces'), the rest is replaced."""
    for name, value in figures.items():
        if name in SHARED and isinstance(results.get(name), dict):
            results[name] = {**results[name], **value}
        else:
            results[name] = value


def main(chosen: list[str]) -> None:
    unknown = [name for name in chosen if name not in PIECES]
    if unknown:
        raise SystemExit(f"unknown bench pieces {unknown}; choose from {list(PIECES)}")
    started = time.perf_counter()
    results: dict[str, Any] = json.loads(report.RESULTS.read_text()) if chosen else {}
    for name, (title, piece) in PIECES.items():
        if not chosen or name in chosen:
            print(f"{title} ...", flush=True)
            merge(results, piece())
    results.pop("costs", None)
    results["costs"] = costs.model(results)
    report.write(results)
    print(f"done in {time.perf_counter() - started:.0f} s: bench/results.json, docs/performance.md, docs/fanout.png")


if __name__ == "__main__":
    main(sys.argv[1:])
