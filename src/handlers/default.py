"""$default and the actions every namespace shares: `ping`, `auth:refresh`. Anything unrouted is answered here:
every message of a Socket.IO connection (not JSON objects, API Gateway routes them all to $default), and every
native action when the stack has no route per action (RoutePerAction false), each performed by the namespace
action its own route would reach."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.protocol.actions import Empty, RefreshToken
from shared.protocol.clock import iso
from shared.protocol.codec import Codec
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import FrameError, InboundFrame, Outcome
from shared.protocol.outbound import Pong, TokenRenewed, answer
from shared.protocol.websocket import WebSocketEvent
from shared.wiring.namespace import LambdaResponse, Namespace, Request, read_native, websocket_entry
from shared.wiring.services import services

if TYPE_CHECKING:
    from shared.wiring.socketio_app import SocketIoApp

# The actions of no namespace in particular, which every connection may send.
common = Namespace(None)


@common.action("ping", Empty)
def ping(request: Request, _: Empty) -> Outcome:
    return answer("ping", Pong(timestamp=iso(request.now)))


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
    return answer("auth:refresh", TokenRenewed(exp=renewed.exp))


@cache
def namespaces() -> dict[str | None, Namespace]:
    """Loaded with the first Socket.IO message or native action of a namespace: a container serving only ping and
    auth:refresh never pays for the three namespaces' modules (decision 0050)."""
    from handlers.analytics import analytics
    from handlers.conversations import conversations
    from handlers.notifications import notifications

    return {
        None: common,
        conversations.name: conversations,
        notifications.name: notifications,
        analytics.name: analytics,
    }


@cache
def sockets() -> SocketIoApp:
    from shared.wiring.socketio_app import SocketIoApp

    return SocketIoApp(namespaces())


def owner(frame: InboundFrame | FrameError) -> Namespace:
    """The namespace whose action a native frame names. Its own route sends it to that namespace's function, but
    with RoutePerAction false (decision 0072) every action arrives here; an unknown one is common's to refuse."""
    if not isinstance(frame, InboundFrame) or frame.action in common.routes:
        return common
    return next((namespace for namespace in namespaces().values() if frame.action in namespace.routes), common)


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    parsed = WebSocketEvent.of(event)
    runtime = services()
    authorizer = parsed.request_context.raw_event.get("authorizer")
    # The authorizer chose the codec at the handshake (docs/socketio.md), so no frame is guessed at.
    if (authorizer or {}).get("codec") == Codec.SOCKETIO:
        return sockets().handle(parsed, runtime)
    frame = read_native(parsed, runtime)
    return owner(frame).handle(parsed, runtime, frame)
