"""$disconnect: forget the connection and its memberships; announce the user's last connection closing."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import utc_now
from shared.protocol.websocket import WebSocketEvent
from shared.wiring.namespace import LambdaResponse, respond, websocket_entry
from shared.wiring.services import services


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    request_context = WebSocketEvent.of(event).request_context
    services().presence.disconnect(request_context.connection_id, utc_now())
    metrics.add_metric(name="Disconnections", unit=MetricUnit.Count, value=1)
    raw = request_context.raw_event
    logger.info(
        "disconnected", extra={"status": raw.get("disconnectStatusCode"), "reason": raw.get("disconnectReason")}
    )
    return respond(None)
