"""`make bench`: AWS calls per operation, fan-out speed, cold starts and end-to-end latency (docs/performance.md)."""
