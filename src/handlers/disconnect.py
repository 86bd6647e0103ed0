"""$disconnect: forget the connection and its memberships; announce the user's last connection closing."""

from __future__ import annotations

from shared.observability import MetricUnit, metrics
from shared.protocol.clock import utc_now
from shared.protocol.websocket import WebSocketEvent
from shared.wiring.namespace import LambdaResponse, respond, websocket_entry
from shared.wiring.services import services


def disconnect(event: WebSocketEvent) -> LambdaResponse:
    services().presence.disconnect(event.request_context.connection_id, utc_now())
    metrics.add_metric(name="Disconnections", unit=MetricUnit.Count, value=1)
    return respond(None)


handler = websocket_entry(disconnect)
