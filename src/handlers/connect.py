"""$connect: the authorizer has already admitted the connection; record it and announce the user."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from shared.app import LambdaResponse, respond, websocket_entry
from shared.clock import utc_now
from shared.events import presence_event
from shared.identity import identity_from_authorizer
from shared.observability import MetricUnit, metrics
from shared.rooms import company_room
from shared.runtime import services


def connect(event: APIGatewayWebSocketEvent) -> LambdaResponse:
    connection_id = event.request_context.connection_id
    identity = identity_from_authorizer(event.request_context.raw_event.get("authorizer"))
    runtime = services()
    try:
        first = runtime.connections.open(connection_id, identity, utc_now())
    except Exception:
        # The handshake fails; leave no half-recorded connection behind.
        runtime.connections.close(connection_id)
        raise
    metrics.add_metric(name="Connections", unit=MetricUnit.Count, value=1)
    if first:
        # The new connection cannot receive until $connect returns, so it is left out.
        runtime.hub.emit(
            identity.company_id,
            company_room(identity.company_id),
            presence_event(identity.user_id, online=True),
            exclude=connection_id,
        )
    return respond(None)


handler = websocket_entry(connect)
