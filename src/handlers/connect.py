"""$connect: the authorizer has already admitted the connection; record it (its announcement follows)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import utc_now
from shared.protocol.identity import identity_from_authorizer
from shared.protocol.websocket import WebSocketEvent
from shared.stores.connections import ConnectionRefused
from shared.wiring.namespace import LambdaResponse, respond, websocket_entry
from shared.wiring.services import services


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    request_context = WebSocketEvent.of(event).request_context
    identity = identity_from_authorizer(request_context.raw_event.get("authorizer"))
    try:
        services().presence.connect(request_context.connection_id, identity, utc_now())
    except ConnectionRefused:
        # Its $disconnect came first: the client is gone, and nothing of the connection stays recorded.
        logger.info("connection closed during $connect")
        return {"statusCode": 410}
    metrics.add_metric(name="Connections", unit=MetricUnit.Count, value=1)
    # One line per connection, with the keys every later line of it carries (docs/operations.md: finding a user).
    logger.info("connection opened")
    return respond(None)
