"""The parts of an API Gateway WebSocket proxy event that roomcast reads.

Its own few lines rather than Powertools' `APIGatewayWebSocketEvent`: importing that one class loads every
event class of `aws_lambda_powertools.utilities.data_classes` (Kinesis, S3, ...), about 15 ms of each cold
start (docs/performance.md). The attribute names are Powertools', so code reads the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    connection_id: str
    route_key: str
    raw_event: dict[str, Any]
    """The `requestContext` object as API Gateway sent it (its `authorizer` among others)."""


@dataclass(frozen=True)
class WebSocketEvent:
    request_context: RequestContext
    body: str | None
    is_base64_encoded: bool

    @classmethod
    def of(cls, event: dict[str, Any]) -> WebSocketEvent:
        context: dict[str, Any] = event.get("requestContext") or {}
        return cls(
            RequestContext(str(context.get("connectionId", "")), str(context.get("routeKey", "")), context),
            event.get("body"),
            bool(event.get("isBase64Encoded", False)),
        )
