"""`make bench`: runs every measurement and writes bench/results.json, docs/performance.md and docs/fanout.png."""

from __future__ import annotations

import time

from bench import calls, cold_start, e2e, fanout, report


def main() -> None:
    started = time.perf_counter()
    # Fan-out first, in a small heap: after moto's tables, garbage collection alone doubles its CPU per post.
    print("fan-out against the 20 ms stand-in ...", flush=True)
    fanout_rows = fanout.run()
    print("calls per operation (moto) ...", flush=True)
    call_counts, items_read = calls.run()
    print("cold starts ...", flush=True)
    ratios, medians = cold_start.run()
    print("end to end through the local stack ...", flush=True)
    e2e_figures = e2e.run()
    report.write(
        {
            "calls": call_counts,
            "items_read": items_read,
            "fanout": fanout_rows,
            "cold_start": ratios,
            "cold_start_ms": medians,
            "e2e": e2e_figures,
        }
    )
    print(f"done in {time.perf_counter() - started:.0f} s: bench/results.json, docs/performance.md, docs/fanout.png")


if __name__ == "__main__":
    main()
