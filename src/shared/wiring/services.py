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

from shared.delivery.deferred import Deferrer, LambdaDeferrer
from shared.delivery.delayed import DelayedTask, Delayer, SqsDelayer
from shared.delivery.hub import Hub, LargeRooms
from shared.delivery.management_api import Gateway, ManagementApi
from shared.domain.access import Kicks
from shared.domain.analytics import Analytics
from shared.domain.messages import Messages, Readers
from shared.domain.presence import Presence
from shared.domain.sessions import RecoveryPolicy, Sessions
from shared.protocol.actions import Period
from shared.protocol.clock import Clock, SystemClock
from shared.protocol.recovery import MAX_CONNECTION_LIFE
from shared.stores.access import AccessStore
from shared.stores.analytics import AnalyticsStore
from shared.stores.budget import PostBudget
from shared.stores.connections import ConnectionStore
from shared.stores.conversations import ConversationStore
from shared.stores.dynamo import Table
from shared.stores.journal import Journal
from shared.stores.notifications import NotificationStore
from shared.stores.ratelimit import RateLimiter
from shared.stores.sessions import SessionStore
from shared.wiring.settings import Settings, settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

# A fixed User-Agent: botocore otherwise rebuilds and sanitises its own, character by character, twice for
# every request, a sixth of a DynamoDB call's CPU (decision 0076).
USER_AGENT = f"roomcast botocore/{botocore.__version__} Python/{platform.python_version()}"
# Three attempts in all (botocore's `max_attempts` counts only the retries), with standard backoff.
_RETRIES = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5, user_agent=USER_AGENT
)


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
    access: AccessStore
    conversations: ConversationStore
    notifications: NotificationStore
    hub: Hub
    deferrer: Deferrer
    delayer: Delayer
    presence: Presence
    kicks: Kicks
    analytics: Analytics
    messages: Messages
    limiter: RateLimiter
    sessions: Sessions
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
) -> Services:
    session = session or boto3.session.Session()
    # Low-level clients under the stores' tables (decision 0076): boto3's resource layer cost a quarter again.
    dynamodb = session.client("dynamodb", config=_RETRIES)
    connections_table = Table(dynamodb, config.connections_table)
    recovery_table = Table(dynamodb, config.recovery_table)
    window = timedelta(seconds=config.recovery_window_seconds)
    # A journal entry must outlive any session that may still replay it: its last connection's life, then the window.
    retention = window + MAX_CONNECTION_LIFE
    journal = Journal(recovery_table, retention)
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
        deferrer = LambdaDeferrer(session.client("lambda", config=_RETRIES), config.deferred_function)
    large_rooms = LargeRooms(
        threshold=config.large_room_threshold,
        chunk=config.broadcast_chunk,
        batch=config.fanout_concurrency,
        budget=PostBudget(connections_table, config.posts_per_second),
        clock=clock or SystemClock(),
    )
    hub = Hub(
        connections, gateway, deferrer, config.limits.max_outbound_bytes, large_rooms, journal=journal, clock=clock
    )
    access = AccessStore(connections_table)
    delayer = delayer or QueueDelayer(session, config.delay_queue_url)
    presence = Presence(connections, access, hub, deferrer, delayer, grace_seconds=config.presence_grace_seconds)
    conversations = ConversationStore(Table(dynamodb, config.conversations_table))
    analytics = Analytics(AnalyticsStore(Table(dynamodb, config.analytics_table)), hub, deferrer)

    def readers() -> Readers:
        # Each read a send runs beside the rate limit (decision 0047) has a client of its own, so that calls at
        # once never share one client's connection pool or its retry state.
        seq_reads, conversation_reads, member_reads = (session.client("dynamodb", config=_RETRIES) for _ in range(3))
        members = ConnectionStore(
            Table(member_reads, config.connections_table),
            config.connection_ttl_seconds,
            config.max_rooms_per_connection,
            journal=journal,
            tombstone_life=retention,
            hour_index_shards=config.hour_index_shards,
        )
        return Readers(
            seq=ConversationStore(Table(seq_reads, config.conversations_table)),
            conversations=ConversationStore(Table(conversation_reads, config.conversations_table)),
            # The members read ahead decide whether a send's room is handed off whole (decision 0052).
            members=Hub(members, gateway, deferrer, config.limits.max_outbound_bytes, large_rooms),
        )

    return Services(
        connections=connections,
        access=access,
        conversations=conversations,
        notifications=NotificationStore(Table(dynamodb, config.notifications_table)),
        hub=hub,
        deferrer=deferrer,
        delayer=delayer,
        presence=presence,
        kicks=Kicks(access, connections, hub, presence),
        analytics=analytics,
        messages=Messages(conversations, hub, analytics, readers),
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
