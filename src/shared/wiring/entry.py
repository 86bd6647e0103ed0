"""A WebSocket route's Lambda entry point and its response: apart from the namespaces' pipeline
(shared.wiring.namespace), so that `$connect` and `$disconnect`, which run no action, do not load the actions, the
replies and the rate limit at their cold start (decision 0106)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import instrumented, logger
from shared.protocol.websocket import WebSocketEvent

LambdaResponse = dict[str, Any]
Entry = Callable[[dict[str, Any], LambdaContext], LambdaResponse]


def respond(body: str | None) -> LambdaResponse:
    """With a route response configured, API Gateway sends `body` back on the caller's connection."""
    if body is None:
        return {"statusCode": 200}
    return {"statusCode": 200, "body": body}


def websocket_entry(handler: Entry) -> Entry:
    """A WebSocket route's Lambda handler with logging keys, the correlation id, metrics and tracing."""

    @instrumented(correlation_id_path="requestContext.requestId")
    @functools.wraps(handler)
    def entry(event: dict[str, Any], context: LambdaContext) -> LambdaResponse:
        request_context = WebSocketEvent.of(event).request_context
        authorizer = request_context.raw_event.get("authorizer") or {}
        logger.append_keys(
            connection_id=request_context.connection_id,
            route_key=request_context.route_key,
            user_id=authorizer.get("userId"),
            company_id=authorizer.get("companyId"),
        )
        return handler(event, context)

    return cast(Entry, entry)
