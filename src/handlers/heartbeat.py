"""On schedule: an Engine.IO ping to every Socket.IO connection, which closes itself after pingInterval +
pingTimeout without one; the pings also keep API Gateway's idle timer from closing it (decision 0038). The
schedule's run hands each shard of the heartbeat index to an invocation of its own, which pings that shard
(decision 0093)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.delivery.heartbeat import parse_shard, ping_all, start_shards
from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.wiring.loading import loaded
from shared.wiring.services import services


@instrumented()
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, int]:
    runtime = services()
    if "shard" not in event:
        # EventBridge's scheduled event: start every shard.
        started = start_shards(runtime.shard_starter, runtime.config.hour_index_shards)
        metrics.add_metric(name="HeartbeatShardsStarted", unit=MetricUnit.Count, value=started)
        return {"shards": started}
    try:
        shard = parse_shard(event, runtime.config.hour_index_shards)
    except ValueError:
        logger.error("not a heartbeat shard", extra={"keys": sorted(event)[:10]})
        return {"pinged": 0}
    pinged = ping_all(runtime.connections, runtime.hub, runtime.clock.now(), shard.shard)
    metrics.add_metric(name="SocketIoPings", unit=MetricUnit.Count, value=pinged)
    return {"pinged": pinged}


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
