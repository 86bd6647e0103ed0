"""$connect: the authorizer has already admitted the connection; record it (its announcement follows)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.delivery.deferred import NativeSessionOpened
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.identity import identity_from_authorizer
from shared.protocol.websocket import WebSocketEvent
from shared.stores.connections import ConnectionRefused
from shared.wiring.entry import LambdaResponse, respond, websocket_entry
from shared.wiring.loading import loaded
from shared.wiring.services import services


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    request_context = WebSocketEvent.of(event).request_context
    authorizer = request_context.raw_event.get("authorizer")
    identity = identity_from_authorizer(authorizer)
    query: dict[str, Any] = event.get("queryStringParameters") or {}
    connection_id = request_context.connection_id
    native_session = NativeSessionOpened(
        connectionId=connection_id,
        identity=dict(authorizer or {}),
        session=_text(query.get("session")),
        offset=_text(query.get("offset")),
    )
    try:
        runtime = services()
        runtime.presence.connect(connection_id, identity, runtime.clock.now(), native_session)
    except ConnectionRefused:
        # Its $disconnect came first: the client is gone, and nothing of the connection stays recorded.
        logger.info("connection closed during $connect")
        return {"statusCode": 410}
    metrics.add_metric(name="Connections", unit=MetricUnit.Count, value=1)
    # One line per connection, with the keys every later line of it carries (docs/operations.md: finding a user).
    logger.info("connection opened")
    return respond(None)


def _text(value: object) -> str | None:
    """A query value to pass on, bounded: what it means is checked by the session's recovery."""
    return value[:64] if isinstance(value, str) else None


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
