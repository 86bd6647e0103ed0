"""The price in AWS of what `make bench` counts (issue 14, item 5): calls per operation (bench.calls) at published
on-demand prices. Every price, its region, its source and the date it was read are in PRICES; every assumption is
in ASSUMPTIONS, both printed with the figures in docs/performance.md."""

from __future__ import annotations

import math
from typing import Any

REGION = "us-east-1"
READ_ON = "2026-11-26"
PRICES: dict[str, dict[str, Any]] = {
    "websocket_message": {
        "usd": 1.00 / 1e6,
        "unit": "message, sent or received, per 32 KB (first billion a month)",
        "source": "https://awsforengineers.com/blog/aws-api-gateway-pricing-explained",
    },
    "websocket_connection_minute": {
        "usd": 0.25 / 1e6,
        "unit": "connection-minute",
        "source": "https://aws.amazon.com/api-gateway/pricing/ (not confirmed through a second page this session)",
    },
    "lambda_request": {
        "usd": 0.20 / 1e6,
        "unit": "invocation",
        "source": "https://aws.amazon.com/lambda/pricing/ (as transcribed 2026-09-20 by api-evangelist/aws-lambda)",
    },
    "lambda_gb_second_arm64": {
        "usd": 0.0000133334,
        "unit": "GB-second, arm64 (first 6 billion a month)",
        "source": "https://aws.amazon.com/lambda/pricing/ (rendered client-side there; not confirmed this session)",
    },
    "dynamodb_write_request_unit": {
        "usd": 0.625 / 1e6,
        "unit": "on-demand write request unit (1 KB)",
        "source": "https://airbyte.com/data-engineering-resources/dynamodb-pricing (after the November 2024 cut)",
    },
    "dynamodb_read_request_unit": {
        "usd": 0.125 / 1e6,
        "unit": "on-demand read request unit (4 KB strongly consistent)",
        "source": "https://airbyte.com/data-engineering-resources/dynamodb-pricing (after the November 2024 cut)",
    },
    "eventbridge_event": {
        "usd": 1.00 / 1e6,
        "unit": "custom event put on a bus (64 KB)",
        "source": "https://aws.amazon.com/eventbridge/pricing/ (not confirmed this session)",
    },
}
MEMORY_GB = 0.5  # template.yaml's Globals MemorySize: 512
# Lambda gives CPU in proportion to memory, one whole vCPU at 1,769 MB
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html); Python runs on one.
FULL_VCPU_MB = 1769
DYNAMODB_MS, POST_MS = 5.0, 20.0  # AWS's round trips, as the path-to-delivery bench injects them
# What a send's reply waits for besides its CPU, one after another: the rate limit beside the reads, the write,
# the posts (at once), the journal's position (decision 0102) and its put, the room read again for sessions
# (decision 0065), and the counter (the count's claim too, with a clientMessageId: decision 0068).
SEND_WAIT_MS = 6 * DYNAMODB_MS + POST_MS
CHUNK, CHUNK_CONCURRENCY, BUDGET_CLAIM_MS = 500, 96, 5.0
ASSUMPTIONS = {
    "write_units": "1 WRU per PutItem or UpdateItem (items under 1 KB), 2 per BatchWriteItem (two memberships)",
    "read_units": "1 RRU per GetItem or Query page (strongly consistent, under 4 KB)",
    "send_duration": "a message:send is billed as `memory` below says (without those figures: the reply time of "
    "the path-to-delivery bench, 5 ms DynamoDB, 20 ms posts); every other invocation for 20 ms at 512 MB, taken as "
    "CPU-bound, so the same GB-seconds at any memory",
    "native_ping": "a native client sends `ping` every 5 minutes (API Gateway closes a connection idle 10 minutes)",
    "socketio_heartbeat": "the server pings every 60 s (SocketIoPingInterval); each pong is a $default invocation "
    "without a DynamoDB write; the heartbeat function's own minute invocation is shared by all connections",
    "connection_life": "a connection lives its full 2 hours: its authorizer, $connect and $disconnect are spread "
    "over them",
    "company": "500 agents, one connection each, 8 hours a day, 22 days a month, 200 message:send a day each to "
    "rooms of 10",
    "recording": "a recoverable event recorded for sessions (decision 0065): one PutItem of the event (under 1 KB) "
    "and the UpdateItem reserving its position (decision 0102); a message:send also reads its room again once recorded",
    "recovery": "a recovery of 100 missed events (1 KB each, 25 per 4 KB read unit) in 3 rooms: the session's "
    "GetItem and UpdateItem, the old record's GetItem, the journal's last position, the pages after the offset, "
    "one transaction (2 WRU per item: the record, the condition check, each membership), a post per event and "
    "the CONNECT reply and session event, one 20 ms invocation",
    "excluded": "data transfer out, CloudWatch Logs and metrics, storage, free tiers, and the deferred function's "
    "work after the reply (presence announcements, trailing metrics pushes)",
    "memory": "with `python -m bench cpu` figures, a send is billed for its CPU measured here (one core of this "
    "machine taken as one vCPU), stretched by 1769 MB / memory below a whole vCPU, plus 6 DynamoDB round trips "
    "in a row (5 ms) and a post (20 ms); a large room's chunk worker (500 posts, 96 at once) for the longer of "
    "its posts' CPU so stretched and their round trips, plus a 5 ms budget claim",
}
OTHER_DURATION_S = 0.020


def _price(name: str) -> float:
    return float(PRICES[name]["usd"])


def dynamodb_usd(calls: dict[str, int]) -> float:
    writes = calls.get("dynamodb.PutItem", 0) + calls.get("dynamodb.UpdateItem", 0)
    writes += 2 * calls.get("dynamodb.BatchWriteItem", 0)
    reads = calls.get("dynamodb.GetItem", 0) + calls.get("dynamodb.Query", 0)
    return writes * _price("dynamodb_write_request_unit") + reads * _price("dynamodb_read_request_unit")


def invocation_usd(seconds: float, memory_gb: float = MEMORY_GB) -> float:
    billed_ms = math.ceil(seconds * 1000)  # Lambda bills by the millisecond
    return _price("lambda_request") + billed_ms / 1000 * memory_gb * _price("lambda_gb_second_arm64")


def send_usd(calls: dict[str, int], send_seconds: float, memory_gb: float = MEMORY_GB) -> float:
    """One message:send: its frame in, its reply out, a post per member, its invocation and its DynamoDB calls."""
    posts = calls.get("apigatewaymanagementapi.PostToConnection", 0)
    messages = 2 + posts
    return messages * _price("websocket_message") + invocation_usd(send_seconds, memory_gb) + dynamodb_usd(calls)


def cpu_ms_at(cpu_ms: float, memory_mb: int) -> float:
    """CPU time measured on one core, as it runs in a function of this memory (a fraction of a vCPU below 1,769 MB;
    Python's one thread gains nothing above)."""
    return cpu_ms * max(1.0, FULL_VCPU_MB / memory_mb)


def send_ms_at(cpu_ms: float, memory_mb: int) -> float:
    return cpu_ms_at(cpu_ms, memory_mb) + SEND_WAIT_MS


def chunk_ms_at(post_cpu_ms: float, memory_mb: int) -> float:
    """A large room's chunk worker: its posts' CPU overlaps their round trips; the longer of the two counts."""
    round_trips = math.ceil(CHUNK / CHUNK_CONCURRENCY) * POST_MS
    return max(cpu_ms_at(post_cpu_ms * CHUNK, memory_mb), round_trips) + BUDGET_CLAIM_MS


def memory_mb(function: str) -> int:
    """A function's MemorySize in template.yaml."""
    from roomcast_local.template import function_definitions, load_template

    return function_definitions(load_template())[function].memory_mb


def memory_model(results: dict[str, Any]) -> dict[str, float]:
    """The send and a large room's chunk at the template's memory and at 512 MB, from the CPU figures."""
    send_cpu, post_cpu = results["cpu"]["send_ms"], results["cpu"]["post_ms"]
    calls = results["calls"]["message:send@10"]
    figures: dict[str, float] = {}
    for label, memory in (("512mb", 512), ("chosen", memory_mb("ConversationsFunction"))):
        reply = send_ms_at(send_cpu, memory)
        figures[f"send_reply_ms_{label}"] = round(reply, 1)
        figures[f"million_sends_to_rooms_of_10_usd_{label}"] = round(
            send_usd(calls, reply / 1000, memory / 1024) * 1e6, 2
        )
    for label, memory in (("512mb", 512), ("chosen", memory_mb("BroadcastFunction"))):
        chunk = chunk_ms_at(post_cpu, memory)
        figures[f"chunk_of_500_ms_{label}"] = round(chunk, 1)
        per_recipient = invocation_usd(chunk / 1000, memory / 1024) / CHUNK
        figures[f"million_large_room_recipients_lambda_usd_{label}"] = round(per_recipient * 1e6, 3)
    figures["conversations_memory_mb"] = memory_mb("ConversationsFunction")
    figures["broadcast_memory_mb"] = memory_mb("BroadcastFunction")
    return figures


def connection_hour_usd(results: dict[str, Any], socketio: bool) -> float:
    calls = results["calls"]
    # The authorizer's one read (the user's access item, kick and revoke) beside $connect's and $disconnect's calls.
    lifecycle = (
        3 * invocation_usd(OTHER_DURATION_S)
        + dynamodb_usd({"dynamodb.GetItem": 1})
        + dynamodb_usd(calls["connect"])
        + dynamodb_usd(calls["disconnect"])
    )
    hour = 60 * _price("websocket_connection_minute") + lifecycle / 2
    if socketio:
        # A ping posted by the heartbeat, a pong received and answered by an invocation of $default.
        hour += 60 * (2 * _price("websocket_message") + invocation_usd(OTHER_DURATION_S))
    else:
        # A ping received and its pong sent back; $default admits it with one rate-limit write.
        pings = 60 / 5
        hour += pings * (2 * _price("websocket_message") + invocation_usd(OTHER_DURATION_S))
        hour += pings * _price("dynamodb_write_request_unit")
    return hour


def recording_usd() -> float:
    """What recording one event costs, whatever the room's size: its position's reservation and its journal put
    (and for a message, the second read of its room)."""
    return 2 * _price("dynamodb_write_request_unit") + _price("dynamodb_read_request_unit")


def recovery_usd(events: int, rooms: int, event_kb: float = 1.0) -> float:
    """One recovery that replays `events` into `rooms` rooms (decision 0065's steps 1 to 3)."""
    journal_units = max(1, math.ceil(events * event_kb / 4))
    reads = 3 + 1 + journal_units  # session, old record, journal head, journal pages
    writes = 1 + 2 * (2 + rooms)  # take-over, then one transaction: record, condition check, memberships
    posts = events + 2
    return (
        reads * _price("dynamodb_read_request_unit")
        + writes * _price("dynamodb_write_request_unit")
        + posts * _price("websocket_message")
        + invocation_usd(OTHER_DURATION_S)
    )


def model(results: dict[str, Any]) -> dict[str, float]:
    memory = memory_model(results) if "cpu" in results else {}
    if memory:
        # At the template's memory, billed for the send's CPU measured by `python -m bench cpu` and its round trips.
        send_seconds = memory["send_reply_ms_chosen"] / 1000
        per_send = send_usd(results["calls"]["message:send@10"], send_seconds, memory["conversations_memory_mb"] / 1024)
    else:
        send_seconds = results["latency"]["reply_ms"] / 1000
        per_send = send_usd(results["calls"]["message:send@10"], send_seconds)
    native_hour = connection_hour_usd(results, socketio=False)
    socketio_hour = connection_hour_usd(results, socketio=True)
    agents, hours, days, sends = 500, 8, 22, 200
    company_native = agents * days * (hours * native_hour + sends * per_send)
    company_socketio = agents * days * (hours * socketio_hour + sends * per_send)
    return {
        "million_sends_to_rooms_of_10_usd": round(per_send * 1e6, 2),
        "connection_hour_native_usd": round(native_hour, 6),
        "connection_hour_socketio_usd": round(socketio_hour, 6),
        "company_500_agents_month_native_usd": round(company_native, 2),
        "company_500_agents_month_socketio_usd": round(company_socketio, 2),
        **memory,
        "million_messages_recorded_for_sessions_usd": round(recording_usd() * 1e6, 2),
        "recovery_of_100_events_in_3_rooms_usd": round(recovery_usd(100, 3), 6),
    }
