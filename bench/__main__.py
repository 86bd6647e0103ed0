"""`make bench`: runs every measurement and writes bench/results.json, docs/performance.md and docs/fanout.png."""

from __future__ import annotations

import time

from bench import calls, cold_start, costs, e2e, fanout, large_room, latency, report


def main() -> None:
    started = time.perf_counter()
    # Fan-out first, in a small heap: after moto's tables, garbage collection alone doubles its CPU per post.
    print("fan-out against the 20 ms stand-in ...", flush=True)
    fanout_rows = fanout.run()
    print("calls per operation (moto) ...", flush=True)
    call_counts, items_read = calls.run()
    print("path to delivery, 5 ms DynamoDB and 20 ms posts ...", flush=True)
    path = latency.run()
    print("a room of 10,000 ...", flush=True)
    large = large_room.run()
    print("cold starts ...", flush=True)
    ratios, medians = cold_start.run()
    print("end to end through the local stack ...", flush=True)
    e2e_figures = e2e.run()
    results = {
        "calls": call_counts,
        "items_read": items_read,
        "fanout": fanout_rows,
        "latency": path,
        "large_room": large,
        "cold_start": ratios,
        "cold_start_ms": medians,
        "e2e": e2e_figures,
    }
    results["costs"] = costs.model(results)
    report.write(results)
    print(f"done in {time.perf_counter() - started:.0f} s: bench/results.json, docs/performance.md, docs/fanout.png")


if __name__ == "__main__":
    main()
