"""$connect REQUEST authorizer: verifies the JWT once; its context reaches every later route."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponseWebSocket,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.domain.tokens import InvalidToken, jwt_secret, verify_token
from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.protocol.codec import codec_of
from shared.protocol.identity import origin_allowed
from shared.protocol.recovery import recovery_asked
from shared.stores.access import AccessStore
from shared.wiring.loading import loaded
from shared.wiring.settings import settings

BEARER = "bearer "


class Unauthorized(Exception):
    """Raised with this exact message, it makes API Gateway answer 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def token_from(event: APIGatewayAuthorizerRequestEvent) -> str | None:
    """`?token=` for browsers, which cannot set headers on a WebSocket, else `Authorization: Bearer`."""
    query: dict[str, str] = event.get("queryStringParameters") or {}
    token = query.get("token")
    if token:
        return token
    header = event.headers.get("Authorization") or ""
    if header.lower().startswith(BEARER):
        return header[len(BEARER) :].strip() or None
    return None


def _deny(request: APIGatewayAuthorizerRequestEvent) -> dict[str, Any]:
    """A Deny policy: API Gateway refuses the handshake with 403."""
    policy = APIGatewayAuthorizerResponseWebSocket.from_route_arn(request.method_arn, "anonymous")
    policy.deny_all_routes()
    return policy.asdict()


@cache
def access_store() -> AccessStore:
    """The one store the authorizer reads (kick and revoke), built on first use; no other store or client."""
    import boto3

    from shared.stores.dynamo import Table
    from shared.wiring.clients import CLIENT_CONFIG

    return AccessStore(Table(boto3.client("dynamodb", config=CLIENT_CONFIG), settings().connections_table))


@instrumented(correlation_id_path="requestContext.requestId")
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    config = settings()
    request = APIGatewayAuthorizerRequestEvent(event)
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, config.allowed_origins):
        metrics.add_metric(name="HandshakesRefused", unit=MetricUnit.Count, value=1)
        logger.info("handshake from an origin not allowed", extra={"origin": origin})
        return _deny(request)
    token = token_from(request)
    if token is None:
        metrics.add_metric(name="HandshakesRefused", unit=MetricUnit.Count, value=1)
        logger.info("handshake without token")
        raise Unauthorized
    try:
        identity = verify_token(token, jwt_secret(config.jwt_secret_arn, config.jwt_secret), config.jwt_leeway_seconds)
    except InvalidToken as error:
        metrics.add_metric(name="HandshakesRefused", unit=MetricUnit.Count, value=1)
        logger.info("handshake with invalid token", extra={"reason": str(error)})
        return _deny(request)
    # One read, the handshake's only one: whether the user's tokens were revoked or sessions ended since.
    access = access_store().read(identity.company_id, identity.user_id)
    if access.refuses(identity.issued_at):
        metrics.add_metric(name="HandshakesRefused", unit=MetricUnit.Count, value=1)
        logger.info("handshake with a revoked token", extra={"user_id": identity.user_id})
        return _deny(request)
    # The codec rides in the context to every route, so $default knows how to read a frame without a lookup;
    # the access marker too, so $connect and a recovery can tell a kick that came after this handshake; and
    # whether the connection asked for sessions (decision 0065).
    query = event.get("queryStringParameters")
    identity = identity.model_copy(
        update={
            "codec": codec_of(query),
            "recovery": recovery_asked(query),
            "sessions_ended_at": access.sessions_ended_at,
        }
    )
    logger.append_keys(user_id=identity.user_id, company_id=identity.company_id)
    metrics.add_metric(name="HandshakesAccepted", unit=MetricUnit.Count, value=1)
    policy = APIGatewayAuthorizerResponseWebSocket.from_route_arn(
        request.method_arn, identity.user_id, context=identity.authorizer_context()
    )
    policy.allow_all_routes()
    return policy.asdict()


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
