"""$default: `ping` and `auth:refresh`, and anything unrouted: every message of a Socket.IO connection (not JSON
objects, API Gateway routes them all to $default), and every native action when the stack has no route per action
(RoutePerAction false), each performed by the namespace action its own route would reach."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.protocol.codec import Codec
from shared.protocol.websocket import WebSocketEvent
from shared.routes.table import namespaces, owner
from shared.wiring.entry import LambdaResponse, websocket_entry
from shared.wiring.loading import loaded
from shared.wiring.namespace import read_native
from shared.wiring.services import services

if TYPE_CHECKING:
    from shared.wiring.socketio_app import SocketIoApp


@cache
def sockets() -> SocketIoApp:
    from shared.wiring.socketio_app import SocketIoApp

    return SocketIoApp(namespaces())


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


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
