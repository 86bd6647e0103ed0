"""$default and the actions every namespace shares: `ping`, `auth:refresh`. Anything unrouted is answered here,
and so is every message of a Socket.IO connection (not JSON objects, API Gateway routes them all to $default),
performed by the same namespace actions the native routes reach."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from shared.protocol.actions import Empty, RefreshToken
from shared.protocol.clock import iso
from shared.protocol.codec import Codec
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Outcome
from shared.protocol.websocket import WebSocketEvent
from shared.wiring.namespace import LambdaResponse, Namespace, Request, websocket_entry
from shared.wiring.services import services
from shared.wiring.settings import settings

if TYPE_CHECKING:
    from shared.wiring.socketio_app import SocketIoApp

session = Namespace(None)


@session.action("ping", Empty)
def ping(request: Request, _: Empty) -> Outcome:
    return Outcome({"timestamp": iso(request.now)}, event="pong")


@session.action("auth:refresh", RefreshToken)
def refresh(request: Request, data: RefreshToken) -> Outcome:
    """Extend the connection's life with a newer token for the same user and company; nothing else changes."""
    from shared.domain.tokens import InvalidToken, jwt_secret, verify_token  # PyJWT only when a refresh comes

    try:
        renewed = verify_token(
            data.token, jwt_secret(settings().jwt_secret_arn, settings().jwt_secret), settings().jwt_leeway_seconds
        )
    except InvalidToken as error:
        raise RoomcastError(ErrorCode.UNAUTHORIZED, "token is not valid") from error
    if (renewed.user_id, renewed.company_id) != (request.identity.user_id, request.identity.company_id):
        raise RoomcastError(ErrorCode.FORBIDDEN, "token is for another user")
    services().connections.extend(request.connection_id, renewed.exp)
    return Outcome({"exp": renewed.exp})


@cache
def sockets() -> SocketIoApp:
    """Loaded with the first Socket.IO message: a container serving native frames (ping, auth:refresh) never
    pays for the three namespaces' modules."""
    from handlers.analytics import analytics
    from handlers.conversations import conversations
    from handlers.notifications import notifications
    from shared.wiring.socketio_app import SocketIoApp

    return SocketIoApp(
        {
            None: session,
            conversations.name: conversations,
            notifications.name: notifications,
            analytics.name: analytics,
        }
    )


def route(event: WebSocketEvent) -> LambdaResponse:
    # The authorizer chose the codec at the handshake (SPEC 10), so no frame is guessed at.
    if (event.request_context.raw_event.get("authorizer") or {}).get("codec") == Codec.SOCKETIO:
        return sockets().handle(event)
    return session.handle(event)


handler = websocket_entry(route)
