"""The wiring: the AWS clients, stores and domain objects a Lambda container builds once and reuses across
invocations. `build_services` is the one place they are put together, for Lambda, tests, the local stack and
bench alike; an entry point fetches them with `services()` and passes them on (decision 0046)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
import botocore
from botocore.config import Config

from shared.delivery.broadcasts import QueueDeferrer
from shared.delivery.deferred import Deferrer, LambdaDeferrer
from shared.delivery.delayed import DelayedTask, Delayer, SqsDelayer
from shared.delivery.heartbeat import HeartbeatShard, LambdaShardStarter, ShardStarter
from shared.delivery.hub import Hub
from shared.delivery.large_rooms import LargeRooms
from shared.delivery.management_api import Gateway, ManagementApi
from shared.domain.access import Kicks
from shared.domain.analytics import Analytics
from shared.domain.conversations import ConversationChanges
from shared.domain.messages import Messages, Readers
from shared.domain.presence import Digests, Presence
from shared.domain.sessions import RecoveryPolicy, Sessions
from shared.protocol.actions import Period
from shared.protocol.clock import Clock, SystemClock
from shared.protocol.recovery import MAX_CONNECTION_LIFE
from shared.stores.access import AccessStore
from shared.stores.analytics import AnalyticsStore
from shared.stores.budget import TenantBudgets
from shared.stores.connections import ConnectionStore
from shared.stores.conversations import ConversationStore
from shared.stores.dynamo import Table
from shared.stores.journal import Journal
from shared.stores.notifications import NotificationStore
from shared.stores.presence_digest import PresenceDigestStore
from shared.stores.ratelimit import RateLimiter
from shared.stores.rooms import RoomReader
from shared.stores.sessions import SessionStore
from shared.wiring.settings import Settings, settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from mypy_boto3_sqs import SQSClient

# A fixed User-Agent: botocore otherwise rebuilds and sanitises its own, character by character, twice for
# every request, a sixth of a DynamoDB call's CPU (decision 0076).
USER_AGENT = f"roomcast botocore/{botocore.__version__} Python/{platform.python_version()}"
# Three attempts in all (botocore's `max_attempts` counts only the retries), with standard backoff.
_RETRIES = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5, user_agent=USER_AGENT
)


class LambdaShards:
    """The heartbeat function's own client, made by the scheduled run: its shard invocations never need it."""

    def __init__(self, session: boto3.session.Session, function_name: str) -> None:
        self._session = session
        self._function_name = function_name
        self._starter: LambdaShardStarter | None = None

    def start(self, shard: HeartbeatShard) -> None:
        if self._starter is None:
            if not self._function_name:
                raise RuntimeError("set HEARTBEAT_FUNCTION to start the heartbeat's shards")
            self._starter = LambdaShardStarter(self._session.client("lambda", config=_RETRIES), self._function_name)
        self._starter.start(shard)


class LazySqs:
    """An SQS client made by the first message: most containers never send one."""

    def __init__(self, session: boto3.session.Session) -> None:
        self._session = session
        self._client: SQSClient | None = None

    def __call__(self) -> SQSClient:
        if self._client is None:
            self._client = self._session.client("sqs", config=_RETRIES)
        return self._client


class QueueDelayer:
    """The delay queue's client, made by the first delayed task: most containers never delay one."""

    def __init__(self, session: boto3.session.Session, queue_url: str) -> None:
        self._session = session
        self._queue_url = queue_url
        self._delayer: SqsDelayer | None = None

    def delay(self, task: DelayedTask, seconds: int) -> None:
        if self._delayer is None:
            if not self._queue_url:
                raise RuntimeError("set DELAY_QUEUE_URL to delay work (the presence grace)")
            self._delayer = SqsDelayer(self._session.client("sqs", config=_RETRIES), self._queue_url)
        self._delayer.delay(task, seconds)


@dataclass(frozen=True)
class Services:
    connections: ConnectionStore
    rooms: RoomReader
    access: AccessStore
    conversations: ConversationStore
    notifications: NotificationStore
    hub: Hub
    large_rooms: LargeRooms
    deferrer: Deferrer
    delayer: Delayer
    shard_starter: ShardStarter
    presence: Presence
    kicks: Kicks
    analytics: Analytics
    messages: Messages
    conversation_changes: ConversationChanges
    limiter: RateLimiter
    sessions: Sessions
    clock: Clock
    """The one clock (decision 0086): what an entry point reads the time from, and what every service was given."""
    session: boto3.session.Session
    config: Settings
    _lazy: dict[str, Any] = field(default_factory=dict)

    def idempotency(self) -> DynamoDBPersistenceLayer:
        """Powertools Idempotency's store, built on first use: only the backend-events function needs it."""
        if "idempotency" not in self._lazy:
            from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

            client = self.session.client("dynamodb", config=_RETRIES)
            self._lazy["idempotency"] = DynamoDBPersistenceLayer(
                table_name=self.config.idempotency_table, boto3_client=client
            )
        store: DynamoDBPersistenceLayer = self._lazy["idempotency"]
        return store


def build_services(
    config: Settings,
    gateway: Gateway | None = None,
    session: boto3.session.Session | None = None,
    deferrer: Deferrer | None = None,
    clock: Clock | None = None,
    *,
    delayer: Delayer | None = None,
    shard_starter: ShardStarter | None = None,
) -> Services:
    session = session or boto3.session.Session()
    clock = clock or SystemClock()
    # Low-level clients under the stores' tables (decision 0076): boto3's resource layer cost a quarter again.
    dynamodb = session.client("dynamodb", config=_RETRIES)
    connections_table = Table(dynamodb, config.connections_table)
    recovery_table = Table(dynamodb, config.recovery_table)
    window = timedelta(seconds=config.recovery_window_seconds)
    # A journal entry must outlive any session that may still replay it: its last connection's life, then the window.
    retention = window + MAX_CONNECTION_LIFE
    journal = Journal(recovery_table, retention, clock)
    connections = ConnectionStore(
        connections_table,
        config.connection_ttl_seconds,
        config.max_rooms_per_connection,
        journal=journal,
        tombstone_life=retention,
        hour_index_shards=config.hour_index_shards,
    )
    if gateway is None:
        client = session.client("apigatewaymanagementapi", endpoint_url=config.management_api_url, config=_RETRIES)
        credentials = session.get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign @connections requests with")
        gateway = ManagementApi(
            config.management_api_url,
            session.region_name or "us-east-1",
            credentials,
            config.fanout_concurrency,
            client,
        )
    if deferrer is None:
        # Large rooms' broadcasts to their own queue, every other task to the deferred function (decision 0092).
        deferrer = QueueDeferrer(
            LazySqs(session),
            config.broadcast_queue_url,
            LambdaDeferrer(session.client("lambda", config=_RETRIES), config.deferred_function),
        )
    rooms = RoomReader(connections_table, config.large_room_threshold)
    hub = Hub(rooms, gateway, deferrer, config.limits.max_outbound_bytes, clock, journal=journal)
    large_rooms = LargeRooms(
        rooms,
        hub,
        deferrer,
        TenantBudgets(connections_table, config.posts_per_second, config.company_posts_per_second),
        clock,
        chunk=config.broadcast_chunk,
        batch=config.fanout_concurrency,
    )
    access = AccessStore(connections_table)
    delayer = delayer or QueueDelayer(session, config.delay_queue_url)
    digests = Digests(
        PresenceDigestStore(connections_table),
        threshold=config.presence_digest_threshold,
        posts_per_second=config.presence_posts_per_second,
        max_frame_bytes=config.limits.max_outbound_bytes,
        clock=clock,
    )
    presence = Presence(
        connections, access, hub, deferrer, delayer, grace_seconds=config.presence_grace_seconds, digests=digests
    )
    conversations = ConversationStore(Table(dynamodb, config.conversations_table), clock)
    analytics = Analytics(AnalyticsStore(Table(dynamodb, config.analytics_table)), hub, deferrer)

    def readers() -> Readers:
        # Each read a send runs beside the rate limit (decision 0047) has a client of its own, so that calls at
        # once never share one client's connection pool or its retry state.
        conversation_reads, member_reads = (session.client("dynamodb", config=_RETRIES) for _ in range(2))
        return Readers(
            conversations=ConversationStore(Table(conversation_reads, config.conversations_table), clock),
            # The members read ahead decide whether a send's room is handed off whole (decision 0052).
            members=RoomReader(Table(member_reads, config.connections_table), config.large_room_threshold),
        )

    messages = Messages(conversations, rooms, hub, analytics, readers)
    return Services(
        connections=connections,
        rooms=rooms,
        access=access,
        conversations=conversations,
        notifications=NotificationStore(Table(dynamodb, config.notifications_table)),
        hub=hub,
        large_rooms=large_rooms,
        deferrer=deferrer,
        delayer=delayer,
        shard_starter=shard_starter or LambdaShards(session, config.heartbeat_function),
        presence=presence,
        kicks=Kicks(access, connections, hub, presence),
        analytics=analytics,
        messages=messages,
        conversation_changes=ConversationChanges(conversations, connections, messages, analytics),
        limiter=RateLimiter(connections_table, config.rate_per_second, config.rate_burst),
        sessions=Sessions(
            SessionStore(recovery_table, retention),
            journal,
            connections,
            hub,
            RecoveryPolicy(window=window, max_events=config.recovery_max_events),
            access=access,
            clock=clock,
            metrics_now=lambda company_id, now: analytics.report(company_id, Period.TODAY, now),
        ),
        clock=clock,
        session=session,
        config=config,
    )


_installed: dict[str, Services] = {}


def services() -> Services:
    """This container's services, built on first use from its environment. Only entry points call it."""
    if "services" not in _installed:
        _installed["services"] = build_services(settings())
    return _installed["services"]


def install(replacement: Services | None) -> None:
    """Use `replacement` from now on (None: build afresh on next use). For tests and the local stack."""
    _installed.pop("services", None)
    if replacement is not None:
        _installed["services"] = replacement
