"""The heartbeat in shards (decision 0093): the schedule's run pings nobody itself, it hands each shard of the
heartbeat index (`heartbeat#{hour}#{shard}`) to an asynchronous invocation of the heartbeat function, so the
connections pinged within one interval grow with the shards, not with one invocation's 29 seconds."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.observability import MetricUnit, logger, metrics
from shared.protocol import socketio

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_lambda import LambdaClient

    from shared.delivery.hub import Hub
    from shared.stores.connections import ConnectionStore


class HeartbeatShard(BaseModel):
    """One invocation's share of the heartbeat: the Socket.IO connections in this shard of the index."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    shard: int = Field(ge=0)


def parse_shard(event: dict[str, Any], shards: int) -> HeartbeatShard:
    """The shard a self-invocation names, one of the `shards` of the index; raises pydantic's ValidationError (a
    ValueError) or ValueError if it names none: a deploy with another count may have started it."""
    shard = HeartbeatShard.model_validate(event)
    if shard.shard >= shards:
        raise ValueError(f"no heartbeat shard {shard.shard} of {shards}")
    return shard


class ShardStarter(Protocol):
    def start(self, shard: HeartbeatShard) -> None: ...


class LambdaShardStarter:
    """Starts a shard's pings with an asynchronous invocation of the heartbeat function (not retried: a ping
    later than the interval is worth nothing, the next run pings again)."""

    def __init__(self, client: LambdaClient, function_name: str) -> None:
        self._client = client
        self._function_name = function_name

    def start(self, shard: HeartbeatShard) -> None:
        self._client.invoke(
            FunctionName=self._function_name,
            InvocationType="Event",
            Payload=json.dumps(shard.model_dump()).encode("utf-8"),
        )


def start_shards(starter: ShardStarter, shards: int) -> int:
    """The scheduled run: one invocation per shard. A shard that could not be started is logged and counted,
    and pinged by the next run; returns how many started."""
    started = 0
    for shard in range(shards):
        try:
            starter.start(HeartbeatShard(shard=shard))
            started += 1
        except Exception:
            logger.exception("could not start a heartbeat shard", extra={"shard": shard})
            metrics.add_metric(name="HandOffFailures", unit=MetricUnit.Count, value=1)
    return started


def ping_all(store: ConnectionStore, hub: Hub, now: datetime, shard: int) -> int:
    """One Engine.IO ping to every Socket.IO connection of one shard of the heartbeat index that may be open;
    returns how many were pinged. Here, not beside the Socket.IO app: a shard's run reads the index and posts a
    constant, and the app's namespaces and sessions are none of its cold start."""
    pinged = 0
    for page in store.heartbeat_due(now, shard):
        hub.send_all(page, socketio.PING)
        pinged += len(page)
    return pinged
