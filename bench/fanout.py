"""Fan-out time to N recipients: one boto3 call after another, boto3 in a 32-thread pool, and roomcast's own
sending code (shared.delivery.management_api.ManagementApi), all against the 20 ms stand-in over real sockets."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from shared.delivery.management_api import Delivery, ManagementApi

SIZES = (10, 100, 1000, 5000)
PAYLOAD = (
    b'{"event":"message:new","namespace":"/conversations","data":{"id":"01a2162d23dc0a3292e2edefe2c23a11",'
    b'"conversationId":"01a21612cf850e63b013968b99b85202","content":"Hello, how can I help?",'
    b'"senderType":"agent","fromUserId":"u-1","timestamp":"2026-11-26T03:44:21.123Z"}}'
)


def _timed(work: Any) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def run() -> list[dict[str, float]]:
    stub = subprocess.Popen([sys.executable, "-m", "bench.management_stub"], stdout=subprocess.PIPE, text=True)
    try:
        assert stub.stdout is not None
        url = f"http://127.0.0.1:{stub.stdout.readline().strip()}/prod"
        session = boto3.session.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
        )
        config = Config(retries={"mode": "standard", "total_max_attempts": 3}, max_pool_connections=32)
        client = session.client("apigatewaymanagementapi", endpoint_url=url, config=config)
        credentials = session.get_credentials()
        assert credentials is not None
        concurrency = int(os.environ.get("FANOUT_CONCURRENCY", "96"))
        roomcast = ManagementApi(url, "us-east-1", credentials, concurrency, client)
        pool = ThreadPoolExecutor(32)
        warm = [f"warm-{i}" for i in range(concurrency)]
        # Warm both, as a Lambda container is after its first invocation: connections open, code loaded.
        list(pool.map(lambda cid: client.post_to_connection(ConnectionId=cid, Data=PAYLOAD), warm))
        roomcast.post_many(warm, PAYLOAD)
        results = []
        for n in SIZES:
            ids = [f"conn-{i:05d}" for i in range(n)]
            # The slow sequential run goes last: both parallel senders then start from warm connections.
            pooled, _ = _timed(
                lambda ids=ids: list(pool.map(lambda c: client.post_to_connection(ConnectionId=c, Data=PAYLOAD), ids))
            )
            outcome: list[Delivery] = []
            ours, cpu = _timed(lambda ids=ids, outcome=outcome: outcome.extend(roomcast.post_many(ids, PAYLOAD)))
            assert outcome == [Delivery.DELIVERED] * n
            sequential, _ = _timed(
                lambda ids=ids: [client.post_to_connection(ConnectionId=c, Data=PAYLOAD) for c in ids]
            )
            results.append({
                "n": n,
                "sequential_s": round(sequential, 4),
                "boto3_pool_s": round(pooled, 4),
                "roomcast_s": round(ours, 4),
                "ideal_s": round(math.ceil(n / 64) * 0.02, 4),
                "roomcast_cpu_ms_per_post": round(cpu / n * 1000, 4),
            })  # fmt: skip
            print(f"  fanout n={n}: {results[-1]}", flush=True)
        roomcast.shutdown()
        return results
    finally:
        stub.kill()
