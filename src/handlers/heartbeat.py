"""On schedule: an Engine.IO ping to every Socket.IO connection, which closes itself after pingInterval +
pingTimeout without one; the pings also keep API Gateway's idle timer from closing it (decision 0038)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import MetricUnit, instrumented, metrics
from shared.wiring.services import services
from shared.wiring.socketio_app import ping_all


@instrumented()
def handler(_event: dict[str, Any], _context: LambdaContext) -> dict[str, int]:
    runtime = services()
    pinged = ping_all(runtime.connections, runtime.hub, runtime.clock.now())
    metrics.add_metric(name="SocketIoPings", unit=MetricUnit.Count, value=pinged)
    return {"pinged": pinged}
