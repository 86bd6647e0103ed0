"""AWS calls per operation, counted with botocore event hooks while the real handlers run against moto."""

from __future__ import annotations

import os

from roomcast_local.environment import DEVELOPMENT_SECRET

# Before the handlers read them: moto's fake credentials, quiet, untraced, no rate limit on a scripted burst.
os.environ.update(
    AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_SESSION_TOKEN="bench", AWS_DEFAULT_REGION="us-east-1",
    CONNECTIONS_TABLE="bench-connections", CONVERSATIONS_TABLE="bench-conversations",
    NOTIFICATIONS_TABLE="bench-notifications", IDEMPOTENCY_TABLE="bench-idempotency",
    ANALYTICS_TABLE="bench-analytics", RECOVERY_TABLE="bench-recovery", POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_DISABLED="true",
    POWERTOOLS_LOG_LEVEL="ERROR", JWT_SECRET_KEY_CALL=DEVELOPMENT_SECRET,
    RATE_LIMIT_PER_SECOND="100000", RATE_LIMIT_BURST="100000",
)  # fmt: skip
# moto answers, never a real endpoint.
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import boto3
from moto import mock_aws

from roomcast_local.template import create_tables, load_template
from roomcast_local.testing import Peer, QueuedDeferrer, QueuedDelayer, RecordingGateway
from shared.protocol.clock import Clock
from shared.protocol.rooms import conversation_room
from shared.wiring import services as runtime
from shared.wiring.services import build_services
from shared.wiring.settings import settings

TABLES = {
    "ConnectionsTable": "bench-connections",
    "ConversationsTable": "bench-conversations",
    "NotificationsTable": "bench-notifications",
    "IdempotencyTable": "bench-idempotency",
    "AnalyticsTable": "bench-analytics",
    "RecoveryTable": "bench-recovery",
}


class Counting:
    """Calls by `service.Operation`, and DynamoDB items read (Count of GetItem, ScannedCount of Query/Scan)."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.calls: Counter[str] = Counter()
        self.items_read = 0
        session.events.register("before-call", self._before)
        session.events.register("after-call.dynamodb", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def _after(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name in ("Query", "Scan"):
            self.items_read += int(parsed.get("ScannedCount", 0))
        elif model.name == "GetItem" and "Item" in parsed:
            self.items_read += 1

    def reset(self) -> None:
        self.calls.clear()
        self.items_read = 0


@contextmanager
def bench_world(
    gateway: RecordingGateway | None = None,
    hook: Callable[[boto3.session.Session], object] | None = None,
    clock: Clock | None = None,
) -> Iterator[tuple[Counting, Any]]:
    """The real handlers against moto, with @connections recorded (by `gateway`, if given); `hook` registers its
    botocore event handlers before the clients are made (a client copies its session's handlers when made);
    `clock`: the services' (decision 0086), the system's if None."""
    settings.cache_clear()
    with mock_aws():
        create_tables(boto3.client("dynamodb"), load_template(), TABLES)
        session = boto3.session.Session()
        counting = Counting(session)
        if hook is not None:
            hook(session)
        gateway = gateway or RecordingGateway()
        # What a request hands off runs in another function after its reply: counted apart, not here.
        deferrer = QueuedDeferrer()
        deferrer.auto = False
        # A grace's end is sent to the delay queue and runs in another function: counted apart, like the above.
        delayer = QueuedDelayer()
        runtime.install(
            build_services(
                settings(), gateway=gateway, session=session, deferrer=deferrer, clock=clock, delayer=delayer
            )
        )
        try:
            yield counting, gateway
        finally:
            runtime.install(None)


def measured(counting: Counting, gateway: Any, operation: Callable[[], Any]) -> dict[str, int]:
    counting.reset()
    gateway.calls = 0
    operation()
    runtime.services().deferrer.take()  # type: ignore[attr-defined]
    result = dict(sorted(counting.calls.items()))
    if gateway.calls:
        result["apigatewaymanagementapi.PostToConnection"] = gateway.calls
    return result


def run() -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Returns the calls per operation and the DynamoDB items read per broadcast message."""
    results: dict[str, dict[str, int]] = {}
    items_read: dict[str, int] = {}
    with bench_world() as (counting, gateway):
        peer = Peer(gateway, "c-0", "u-0", "acme")
        results["connect"] = measured(counting, gateway, peer.connect)
        conversation = peer.ok("conversation:create", {})["conversation"]["id"]  # a third room
        Peer(gateway, "c-0b", "u-0", "acme").connect()  # the user stays online: no status:offline
        results["disconnect"] = measured(counting, gateway, peer.disconnect)

        sender = Peer(gateway, "sender", "sender", "acme").connect()
        connections = boto3.resource("dynamodb").Table(TABLES["ConnectionsTable"])
        for size in (1, 10, 100, 1000):
            conversation = sender.ok("conversation:create", {})["conversation"]["id"]
            # Members written straight into the room: moto copies every table on each transaction, so
            # joining a thousand members through the handlers would take minutes and measure nothing.
            room = conversation_room(conversation).key("acme")
            with connections.batch_writer() as batch:
                for index in range(size - 1):
                    batch.put_item(Item={"pk": room, "sk": f"m{size}-{index}", "userId": "member"})
            send = partial(sender.ok, "message:send", {"conversationId": conversation, "content": "hi"})
            results[f"message:send@{size}"] = measured(counting, gateway, send)
            items_read[f"message:send@{size}"] = counting.items_read
        results["conversation:history"] = measured(
            counting, gateway, lambda: sender.ok("conversation:history", {"conversationId": conversation, "limit": 50})
        )
        notifications = boto3.resource("dynamodb").Table(TABLES["NotificationsTable"])
        pk = "user#acme#sender"
        with notifications.batch_writer() as batch:
            for index in range(1000):
                notification = {"id": f"{index:06d}", "userId": "sender", "type": "task", "title": "A title"}
                batch.put_item(Item={"pk": pk, "sk": f"n#{index:06d}", "unread": pk, "createdAt": "t", **notification})
        results["notification:all_read@1000"] = measured(counting, gateway, lambda: sender.ok("notification:all_read"))
        results["analytics:request@month"] = measured(
            counting, gateway, lambda: sender.ok("analytics:request", {"period": "month"})
        )
    baseline_calls, baseline_items = scan_broadcast_baseline()
    results["baseline:scan-broadcast@10000"] = baseline_calls
    items_read["baseline:scan-broadcast@10000"] = baseline_items
    return results, items_read


def scan_broadcast_baseline(connections: int = 10_000, companies: int = 100) -> tuple[dict[str, int], int]:
    """The AWS sample chat app: every message Scans the whole connections table, then posts to each item.
    Run on a table of 10,000 connections across 100 companies; posts are counted, not sent."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="simplechat_connections",
            KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table = boto3.resource("dynamodb", region_name="us-east-1").Table("simplechat_connections")
        with table.batch_writer() as batch:
            for index in range(connections):
                batch.put_item(Item={"connectionId": f"conn-{index:05d}", "companyId": f"company-{index % companies}"})
        session = boto3.session.Session(region_name="us-east-1")
        counting = Counting(session)
        scanner = session.resource("dynamodb").Table("simplechat_connections")
        posts = 0
        query: dict[str, Any] = {"ProjectionExpression": "connectionId"}
        while True:
            page = scanner.scan(**query)
            posts += len(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        calls = dict(counting.calls)
        calls["apigatewaymanagementapi.PostToConnection"] = posts
        return calls, counting.items_read
