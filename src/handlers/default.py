"""$default and the actions every namespace shares: `ping`, `auth:refresh`. Anything unrouted is answered here,
and so is every message of a Socket.IO connection (not JSON objects, API Gateway routes them all to $default),
performed by the same namespace actions the native routes reach."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.protocol.actions import Empty, RefreshToken
from shared.protocol.clock import iso
from shared.protocol.codec import Codec
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Outcome
from shared.protocol.websocket import WebSocketEvent
from shared.wiring.namespace import LambdaResponse, Namespace, Request, websocket_entry
from shared.wiring.services import services

if TYPE_CHECKING:
    from shared.wiring.socketio_app import SocketIoApp

# The actions of no namespace in particular, which every connection may send.
common = Namespace(None)


@common.action("ping", Empty)
def ping(request: Request, _: Empty) -> Outcome:
    return Outcome({"timestamp": iso(request.now)}, event="pong")


@common.action("auth:refresh", RefreshToken)
def refresh(request: Request, data: RefreshToken) -> Outcome:
    """Extend the connection's life with a newer token for the same user and company; nothing else changes."""
    from shared.domain.tokens import InvalidToken, jwt_secret, verify_token  # PyJWT only when a refresh comes

    config = request.config
    try:
        renewed = verify_token(
            data.token, jwt_secret(config.jwt_secret_arn, config.jwt_secret), config.jwt_leeway_seconds
        )
    except InvalidToken as error:
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "token is not valid") from error
    if (renewed.user_id, renewed.company_id) != (request.identity.user_id, request.identity.company_id):
        raise RoomcastError(ErrorCode.FORBIDDEN, "token is for another user")
    if request.services.access.read(renewed.company_id, renewed.user_id).refuses(renewed.issued_at):
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "token is not valid")
    request.services.connections.extend(request.connection_id, renewed.exp)
    return Outcome({"exp": renewed.exp})


@cache
def sockets() -> SocketIoApp:
    """Loaded with the first Socket.IO message: a container serving native frames (ping, auth:refresh) never
    pays for the three namespaces' modules (decision 0050)."""
    from handlers.analytics import analytics
    from handlers.conversations import conversations
    from handlers.notifications import notifications
    from shared.wiring.socketio_app import SocketIoApp

    return SocketIoApp(
        {
            None: common,
            conversations.name: conversations,
            notifications.name: notifications,
            analytics.name: analytics,
        }
    )


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    parsed = WebSocketEvent.of(event)
    runtime = services()
    # The authorizer chose the codec at the handshake (SPEC 10), so no frame is guessed at.
    if (parsed.request_context.raw_event.get("authorizer") or {}).get("codec") == Codec.SOCKETIO:
        return sockets().handle(parsed, runtime)
    return common.handle(parsed, runtime)
