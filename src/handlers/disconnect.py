"""$disconnect: forget the connection and its memberships; announce the user's last connection closing; end its
sessions if the client closed cleanly, else start their recovery window (decision 0065)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import MetricUnit, logger, metrics
from shared.protocol.recovery import session_ended_by
from shared.protocol.websocket import WebSocketEvent
from shared.wiring.entry import LambdaResponse, respond, websocket_entry
from shared.wiring.loading import loaded
from shared.wiring.services import services


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    runtime = services()
    context = WebSocketEvent.of(event).request_context
    now = runtime.clock.now()
    closed = runtime.presence.disconnect(context.connection_id, now)
    if closed is not None and closed.connection.sessions:
        connection = closed.connection
        ended = session_ended_by(connection.identity.codec, context.raw_event.get("disconnectStatusCode"))
        runtime.sessions.closed(connection.connection_id, connection.sessions, ended, now)
    metrics.add_metric(name="Disconnections", unit=MetricUnit.Count, value=1)
    raw = context.raw_event
    logger.info(
        "disconnected", extra={"status": raw.get("disconnectStatusCode"), "reason": raw.get("disconnectReason")}
    )
    return respond(None)


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
