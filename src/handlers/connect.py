"""$connect: the authorizer has already admitted the connection; record it (its announcement follows)."""

from __future__ import annotations

from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import utc_now
from shared.protocol.identity import identity_from_authorizer
from shared.protocol.websocket import WebSocketEvent
from shared.stores.connections import ConnectionRefused
from shared.wiring.namespace import LambdaResponse, respond, websocket_entry
from shared.wiring.services import services


def connect(event: WebSocketEvent) -> LambdaResponse:
    identity = identity_from_authorizer(event.request_context.raw_event.get("authorizer"))
    try:
        services().presence.connect(event.request_context.connection_id, identity, utc_now())
    except ConnectionRefused:
        # Its $disconnect came first: the client is gone, and nothing of the connection stays recorded.
        logger.info("connection closed during $connect")
        return {"statusCode": 410}
    metrics.add_metric(name="Connections", unit=MetricUnit.Count, value=1)
    return respond(None)


handler = websocket_entry(connect)
