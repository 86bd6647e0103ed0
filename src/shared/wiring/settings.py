"""Configuration read once per Lambda container from its environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from shared.protocol.limits import Limits, limits


@dataclass(frozen=True)
class Settings:
    connections_table: str
    conversations_table: str
    notifications_table: str
    idempotency_table: str
    analytics_table: str
    recovery_table: str
    management_api_url: str
    deferred_function: str
    jwt_secret_arn: str | None
    jwt_secret: str | None
    jwt_leeway_seconds: int
    connection_ttl_seconds: int
    fanout_concurrency: int
    large_room_threshold: int
    broadcast_chunk: int
    posts_per_second: int
    limits: Limits
    history_page_max: int
    max_rooms_per_connection: int
    rate_per_second: float
    rate_burst: int
    rate_strikes_to_close: int
    allowed_origins: tuple[str, ...]
    socketio_ping_interval_seconds: int
    socketio_ping_timeout_seconds: int
    recovery_window_seconds: int
    recovery_max_events: int
    presence_grace_seconds: int
    delay_queue_url: str
    hour_index_shards: int


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@cache
def settings() -> Settings:
    return Settings(
        connections_table=os.environ.get("CONNECTIONS_TABLE", "roomcast-connections"),
        conversations_table=os.environ.get("CONVERSATIONS_TABLE", "roomcast-conversations"),
        notifications_table=os.environ.get("NOTIFICATIONS_TABLE", "roomcast-notifications"),
        idempotency_table=os.environ.get("IDEMPOTENCY_TABLE", "roomcast-idempotency"),
        analytics_table=os.environ.get("ANALYTICS_TABLE", "roomcast-analytics"),
        recovery_table=os.environ.get("RECOVERY_TABLE", "roomcast-recovery"),
        management_api_url=os.environ.get("MANAGEMENT_API_URL", ""),
        deferred_function=os.environ.get("DEFERRED_FUNCTION", "roomcast-deferred"),
        jwt_secret_arn=os.environ.get("JWT_SECRET_ARN") or None,
        jwt_secret=os.environ.get("JWT_SECRET_KEY_CALL") or None,
        jwt_leeway_seconds=_int("JWT_LEEWAY_SECONDS", 10),
        # API Gateway closes every connection after 2 hours; records outlive that a little.
        connection_ttl_seconds=_int("CONNECTION_TTL_SECONDS", 2 * 3600 + 600),
        fanout_concurrency=_int("FANOUT_CONCURRENCY", 96),
        # Past this many recipients a room is posted to by chunk workers after the reply (decision 0052).
        large_room_threshold=_int("LARGE_ROOM_THRESHOLD", 500),
        broadcast_chunk=_int("BROADCAST_CHUNK", 500),
        # Chunk workers' share of API Gateway's account-wide 10,000 requests a second, which posts count against.
        posts_per_second=_int("POSTS_PER_SECOND", 5000),
        limits=limits(),
        history_page_max=_int("HISTORY_PAGE_MAX", 100),
        # Keeps the connection's record, rewritten by every action's rate limit, far below 400 KB.
        max_rooms_per_connection=_int("MAX_ROOMS_PER_CONNECTION", 200),
        rate_per_second=float(os.environ.get("RATE_LIMIT_PER_SECOND", "20")),
        rate_burst=_int("RATE_LIMIT_BURST", 40),
        # Refused this many times in a row, a connection is closed.
        rate_strikes_to_close=_int("RATE_LIMIT_STRIKES_TO_CLOSE", 20),
        allowed_origins=tuple(
            origin.strip() for origin in os.environ.get("ALLOWED_ORIGINS", "*").split(",") if origin.strip()
        ),
        # What the Engine.IO open packet announces; the heartbeat schedule must ping at least this often.
        socketio_ping_interval_seconds=_int("SOCKETIO_PING_INTERVAL", 60),
        socketio_ping_timeout_seconds=_int("SOCKETIO_PING_TIMEOUT", 60),
        # How long a session outlives its connection, and the most a recovery replays (decision 0065).
        recovery_window_seconds=_int("RECOVERY_WINDOW_SECONDS", 7200),
        recovery_max_events=_int("RECOVERY_MAX_EVENTS", 1000),
        # How long a user whose last connection closed stays present (decision 0060); 0 announces at once.
        presence_grace_seconds=max(0, _int("PRESENCE_GRACE_SECONDS", 30)),
        delay_queue_url=os.environ.get("DELAY_QUEUE_URL", ""),
        # Partitions per hour of the opened and heartbeat indexes, one heartbeat invocation each (decision 0093);
        # the template's HourIndexShards (default 16) sets it.
        hour_index_shards=max(1, _int("HOUR_INDEX_SHARDS", 16)),
    )
