"""The wiring: the AWS clients, stores and domain objects a Lambda container builds once and reuses across
invocations. `build_services` is the one place they are put together, for Lambda, tests, the local stack and
bench alike; an entry point fetches them with `services()` and passes them on (decision 0046)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

import boto3

from shared.delivery.broadcasts import QueueDeferrer
from shared.delivery.deferred import Deferrer, LambdaDeferrer
from shared.delivery.hub import Hub
from shared.delivery.management_api import Gateway, ManagementApi
from shared.protocol.clock import Clock, SystemClock
from shared.protocol.recovery import MAX_CONNECTION_LIFE
from shared.stores.access import AccessStore
from shared.stores.connections import ConnectionStore
from shared.stores.dynamo import Table
from shared.stores.journal import Journal
from shared.stores.rooms import RoomReader
from shared.wiring.clients import CLIENT_CONFIG
from shared.wiring.settings import Settings, settings

if TYPE_CHECKING:
    # What only some functions use is imported by the member that builds it, on first use (decision 0106): the
    # types alone are here.
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

    from shared.delivery.delayed import DelayedTask, Delayer, SqsDelayer
    from shared.delivery.heartbeat import HeartbeatShard, LambdaShardStarter, ShardStarter
    from shared.delivery.large_rooms import LargeRooms
    from shared.domain.access import Kicks
    from shared.domain.analytics import Analytics
    from shared.domain.conversations import ConversationChanges
    from shared.domain.messages import Messages
    from shared.domain.presence import Presence
    from shared.domain.sessions import Sessions
    from shared.stores.conversations import ConversationStore
    from shared.stores.notifications import NotificationStore
    from shared.stores.ratelimit import RateLimiter


def _retention(config: Settings) -> timedelta:
    """How long a journal entry and a session are kept: they must outlive any session that may still replay
    them, that is their last connection's life, then the window."""
    return timedelta(seconds=config.recovery_window_seconds) + MAX_CONNECTION_LIFE


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
            from shared.delivery.heartbeat import LambdaShardStarter

            client = self._session.client("lambda", config=CLIENT_CONFIG)
            self._starter = LambdaShardStarter(client, self._function_name)
        self._starter.start(shard)


class LazySqs:
    """An SQS client made by the first message: most containers never send one."""

    def __init__(self, session: boto3.session.Session) -> None:
        self._session = session
        self._client: SQSClient | None = None

    def __call__(self) -> SQSClient:
        if self._client is None:
            self._client = self._session.client("sqs", config=CLIENT_CONFIG)
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
            from shared.delivery.delayed import SqsDelayer

            self._delayer = SqsDelayer(self._session.client("sqs", config=CLIENT_CONFIG), self._queue_url)
        self._delayer.delay(task, seconds)


@dataclass(frozen=True)
class Services:
    """What every function's common path uses is built with the services; the rest (a member below with its own
    builder) is built, and its modules imported, by the first use: a cold start pays only for what its function
    reaches (decision 0106). Each is still built once per container, from the same clients and clock."""

    connections: ConnectionStore
    rooms: RoomReader
    access: AccessStore
    hub: Hub
    deferrer: Deferrer
    delayer: Delayer
    shard_starter: ShardStarter
    clock: Clock
    """The one clock (decision 0086): what an entry point reads the time from, and what every service was given."""
    session: boto3.session.Session
    config: Settings
    journal: Journal
    dynamodb: DynamoDBClient
    """The client the stores' tables share (decision 0076)."""

    def _table(self, name: str) -> Table:
        return Table(self.dynamodb, name)

    @cached_property
    def conversations(self) -> ConversationStore:
        from shared.stores.conversations import ConversationStore

        return ConversationStore(self._table(self.config.conversations_table), self.clock)

    @cached_property
    def notifications(self) -> NotificationStore:
        from shared.stores.notifications import NotificationStore

        return NotificationStore(self._table(self.config.notifications_table))

    @cached_property
    def large_rooms(self) -> LargeRooms:
        from shared.delivery.large_rooms import LargeRooms
        from shared.stores.budget import TenantBudgets

        config = self.config
        budgets = TenantBudgets(
            self._table(config.connections_table), config.posts_per_second, config.company_posts_per_second
        )
        return LargeRooms(
            self.rooms,
            self.hub,
            self.deferrer,
            budgets,
            self.clock,
            chunk=config.broadcast_chunk,
            batch=config.fanout_concurrency,
        )

    @cached_property
    def presence(self) -> Presence:
        from shared.domain.presence import Digests, Presence
        from shared.stores.presence_digest import PresenceDigestStore

        config = self.config
        digests = Digests(
            PresenceDigestStore(self._table(config.connections_table)),
            threshold=config.presence_digest_threshold,
            posts_per_second=config.presence_posts_per_second,
            max_frame_bytes=config.limits.max_outbound_bytes,
            clock=self.clock,
        )
        return Presence(
            self.connections,
            self.access,
            self.hub,
            self.deferrer,
            self.delayer,
            grace_seconds=config.presence_grace_seconds,
            digests=digests,
        )

    @cached_property
    def kicks(self) -> Kicks:
        from shared.domain.access import Kicks

        return Kicks(self.access, self.connections, self.hub, self.presence)

    @cached_property
    def analytics(self) -> Analytics:
        from shared.domain.analytics import Analytics
        from shared.stores.analytics import AnalyticsStore

        return Analytics(AnalyticsStore(self._table(self.config.analytics_table)), self.hub, self.deferrer)

    @cached_property
    def messages(self) -> Messages:
        from shared.domain.messages import Messages, Readers
        from shared.stores.conversations import ConversationStore

        config, clock = self.config, self.clock

        def readers() -> Readers:
            # Each read a send runs beside the rate limit (decision 0047) has a client of its own, so that calls
            # at once never share one client's connection pool or its retry state.
            conversation_reads, member_reads = (self.session.client("dynamodb", config=CLIENT_CONFIG) for _ in range(2))
            return Readers(
                conversations=ConversationStore(Table(conversation_reads, config.conversations_table), clock),
                # The members read ahead decide whether a send's room is handed off whole (decision 0052).
                members=RoomReader(Table(member_reads, config.connections_table), config.large_room_threshold),
            )

        return Messages(self.conversations, self.rooms, self.hub, self.analytics, readers)

    @cached_property
    def conversation_changes(self) -> ConversationChanges:
        from shared.domain.conversations import ConversationChanges

        return ConversationChanges(self.conversations, self.connections, self.messages, self.analytics)

    @cached_property
    def limiter(self) -> RateLimiter:
        from shared.stores.ratelimit import RateLimiter

        config = self.config
        return RateLimiter(self._table(config.connections_table), config.rate_per_second, config.rate_burst)

    @cached_property
    def sessions(self) -> Sessions:
        from shared.domain.sessions import RecoveryPolicy, Sessions
        from shared.protocol.actions import Period
        from shared.stores.sessions import SessionStore

        config = self.config
        return Sessions(
            SessionStore(self._table(config.recovery_table), _retention(config)),
            self.journal,
            self.connections,
            self.hub,
            RecoveryPolicy(
                window=timedelta(seconds=config.recovery_window_seconds), max_events=config.recovery_max_events
            ),
            access=self.access,
            clock=self.clock,
            metrics_now=lambda company_id, now: self.analytics.report(company_id, Period.TODAY, now),
        )

    @cached_property
    def idempotency(self) -> DynamoDBPersistenceLayer:
        """Powertools Idempotency's store: only the backend-events function needs it."""
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        client = self.session.client("dynamodb", config=CLIENT_CONFIG)
        return DynamoDBPersistenceLayer(table_name=self.config.idempotency_table, boto3_client=client)


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
    dynamodb = session.client("dynamodb", config=CLIENT_CONFIG)
    connections_table = Table(dynamodb, config.connections_table)
    retention = _retention(config)
    journal = Journal(Table(dynamodb, config.recovery_table), retention, clock)
    connections = ConnectionStore(
        connections_table,
        config.connection_ttl_seconds,
        config.max_rooms_per_connection,
        journal=journal,
        tombstone_life=retention,
        hour_index_shards=config.hour_index_shards,
    )
    if gateway is None:
        client = session.client("apigatewaymanagementapi", endpoint_url=config.management_api_url, config=CLIENT_CONFIG)
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
            LambdaDeferrer(session.client("lambda", config=CLIENT_CONFIG), config.deferred_function),
        )
    rooms = RoomReader(connections_table, config.large_room_threshold)
    return Services(
        connections=connections,
        rooms=rooms,
        access=AccessStore(connections_table),
        hub=Hub(rooms, gateway, deferrer, config.limits.max_outbound_bytes, clock, journal=journal),
        deferrer=deferrer,
        delayer=delayer or QueueDelayer(session, config.delay_queue_url),
        shard_starter=shard_starter or LambdaShards(session, config.heartbeat_function),
        clock=clock,
        session=session,
        config=config,
        journal=journal,
        dynamodb=dynamodb,
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
