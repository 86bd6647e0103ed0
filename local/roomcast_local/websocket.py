"""API Gateway's WebSocket API: the handshake (authorizer, `$connect`), route selection, route replies,
`$disconnect`, frame and message limits, and the idle and hard timeouts.

Each AWS behaviour copied here is documented in docs/local-stack.md with its source."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from roomcast_local.authorizer import Malformed, Refused, authorized_context
from roomcast_local.events import (
    Peer,
    authorizer_event,
    connect_event,
    disconnect_event,
    gateway_headers,
    message_event,
)
from roomcast_local.frames import MAX_MESSAGE_BYTES, LimitedWebSocketResponse
from roomcast_local.template import WebSocketApi
from roomcast_local.workers import Lambda

GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
NO_STATUS = 1005
ABNORMAL = 1006
TOO_BIG = 1009
# What API Gateway reports to $disconnect for each way a connection ends.
CLOSED_BY_SERVER = "Connection Closed Normally"
NO_STATUS_REASON = "Client-side close frame status not set"


class State(Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class Connection:
    peer: Peer
    state: State = State.CONNECTING
    socket: web.WebSocketResponse | None = None
    # Data frames either way keep a connection alive; control frames (pings) do not.
    last_active: float = field(default_factory=time.monotonic)
    last_active_at: float = field(default_factory=time.time)
    closing: tuple[int, str] | None = None

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_at = time.time()

    async def send(self, data: str | bytes) -> None:
        """A text frame, or a binary one for bytes that are not UTF-8."""
        assert self.socket is not None
        if isinstance(data, str):
            await self.socket.send_str(data)
        else:
            try:
                await self.socket.send_str(data.decode("utf-8"))
            except UnicodeDecodeError:
                await self.socket.send_bytes(data)
        self.touch()

    async def close(self, code: int, reason: str) -> None:
        """Close from the server side; $disconnect is told the same code and reason as the client."""
        if self.socket is not None and self.state is State.OPEN and self.closing is None:
            self.closing = (code, reason)
            await self.socket.close(code=code, message=reason.encode())


def new_connection_id() -> str:
    """Shaped like API Gateway's (e.g. `R0oXAdfD0kwCH6w=`): 16 characters ending in `=`, which must be
    URL-encoded in an @connections path."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def internal_error(connection: Connection, request_id: str) -> str:
    return json.dumps(
        {"message": "Internal server error", "connectionId": connection.peer.connection_id, "requestId": request_id}
    )


@dataclass
class Timeouts:
    idle: float = 600.0
    hard: float = 7200.0


class WebSocketEndpoint:
    def __init__(
        self,
        api: WebSocketApi,
        functions: Lambda,
        stage: str,
        timeouts: Timeouts,
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.api = api
        self.functions = functions
        self.stage = stage
        self.timeouts = timeouts
        self.spawn = spawn
        self.connections: dict[str, Connection] = {}
        self.stopping = False

    def open(self, connection_id: str) -> Connection | None:
        connection = self.connections.get(connection_id)
        return connection if connection is not None and connection.state is State.OPEN else None

    async def close_all(self) -> None:
        # Clients that reconnect at once (socket.io-client, the console) must not keep the stack from stopping.
        self.stopping = True
        for connection in list(self.connections.values()):
            await connection.close(GOING_AWAY, "Going away")

    # ---- the handshake ----

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=426, text="roomcast local stack: connect with a WebSocket client\n")
        if self.stopping:
            return web.Response(status=503, text="roomcast local stack: shutting down\n")
        source_ip = request.remote or "127.0.0.1"
        host, _, port = request.host.rpartition(":") if ":" in request.host else (request.host, "", "")
        peer = Peer(
            connection_id=new_connection_id(),
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent"),
            domain_name=host,  # API Gateway's domainName has no port
            stage=self.stage,
        )
        headers = gateway_headers(request.headers, source_ip, int(port or 80), request.scheme)
        refused = await self._authorize(peer, headers, request)
        if refused is not None:
            return refused
        connection = Connection(peer)
        self.connections[peer.connection_id] = connection
        accepted = await self._connect(connection, headers, request)
        if isinstance(accepted, web.Response):
            del self.connections[peer.connection_id]
            return accepted
        # API Gateway negotiates no permessage-deflate: frames are counted as sent.
        ws = LimitedWebSocketResponse(
            max_msg_size=MAX_MESSAGE_BYTES + 1, autoping=True, protocols=accepted, compress=False
        )
        try:
            await ws.prepare(request)
        except ConnectionError:
            # The client left between $connect's answer and the upgrade: as in AWS, $disconnect still runs.
            connection.state = State.CLOSED
            self.connections.pop(peer.connection_id, None)
            self.spawn(self._disconnect(connection, ABNORMAL, ""))
            return ws
        connection.socket = ws
        connection.state = State.OPEN
        connection.touch()
        await self._serve(connection, ws)
        return ws

    async def _authorize(self, peer: Peer, headers: CIMultiDict[str], request: web.Request) -> web.Response | None:
        """A REQUEST authorizer: `Unauthorized` raised is 401, a policy that does not allow the route 403, any
        other failure or an output API Gateway cannot use 500."""
        if self.api.authorizer_function is None:
            return None
        event = authorizer_event(peer, headers, request.query)
        outcome = await self.functions.invoke(self.api.authorizer_function, event, "authorizer", peer.connection_id)
        if outcome.error is not None:
            if outcome.error.get("errorMessage") == "Unauthorized":
                return web.Response(status=401, text="Unauthorized")
            return web.Response(status=500, text="Internal server error")
        try:
            peer.authorizer = authorized_context(outcome.result, event["methodArn"])
        except Refused:
            return web.Response(status=403, text="Forbidden")
        except Malformed:
            return web.Response(status=500, text="Internal server error")
        return None

    async def _connect(
        self, connection: Connection, headers: CIMultiDict[str], request: web.Request
    ) -> web.Response | tuple[str, ...]:
        """The subprotocols to accept, or the refusal. A $connect that fails, or answers something that is not a
        proxy response (None included), is a 502 in AWS; a non-2xx statusCode is passed to the client."""
        route = self.api.routes.get("$connect")
        if route is None:
            return ()
        peer = connection.peer
        event = connect_event(peer, headers, request.query)
        outcome = await self.functions.invoke(route.function, event, "$connect", peer.connection_id)
        result = outcome.result
        status = result.get("statusCode", 200) if isinstance(result, dict) else None
        if outcome.error is not None or not isinstance(status, int):
            return web.Response(status=502, text='{"message": "Internal server error"}')
        if not 200 <= status < 300:
            return web.Response(status=status)
        protocol = (result.get("headers") or {}).get("Sec-WebSocket-Protocol")
        return (str(protocol),) if protocol else ()

    # ---- an open connection ----

    async def _serve(self, connection: Connection, ws: web.WebSocketResponse) -> None:
        idle = asyncio.ensure_future(self._idle_watch(connection))
        hard = asyncio.get_running_loop().call_later(
            self.timeouts.hard, lambda: self.spawn(connection.close(GOING_AWAY, "Going away"))
        )
        code, reason = ABNORMAL, ""
        try:
            while True:
                message = await ws.receive()
                if message.type is WSMsgType.TEXT:
                    connection.touch()
                    self.spawn(self._on_frame(connection, message.data))
                elif message.type is WSMsgType.BINARY:
                    # Binary media types cannot be set on a WebSocket API whose routes are selected from a JSON body.
                    await connection.close(UNSUPPORTED_DATA, "Binary frames are not supported")
                elif message.type is WSMsgType.CLOSE:
                    code = message.data or NO_STATUS
                    reason = message.extra or (NO_STATUS_REASON if code == NO_STATUS else "")
                    break
                elif message.type is WSMsgType.ERROR:
                    code = getattr(message.data, "code", ABNORMAL)  # the WebSocketError aiohttp closed with
                    reason = "Message too big" if code == TOO_BIG else ""
                    break
                else:
                    break
        finally:
            idle.cancel()
            hard.cancel()
            connection.state = State.CLOSED
            if connection.closing is not None:
                code, reason = connection.closing
            # AWS fires $disconnect when the socket closes, whatever handlers of this connection are still running.
            self.connections.pop(connection.peer.connection_id, None)
            self.spawn(self._disconnect(connection, code, reason))

    async def _idle_watch(self, connection: Connection) -> None:
        while connection.state is State.OPEN:
            remaining = connection.last_active + self.timeouts.idle - time.monotonic()
            if remaining <= 0:
                await connection.close(GOING_AWAY, "Going away")
                return
            await asyncio.sleep(remaining)

    async def _on_frame(self, connection: Connection, body: str) -> None:
        peer = connection.peer
        route_key = self.api.select(body)
        route = self.api.routes.get(route_key)
        event = message_event(peer, route_key, body)
        request_id = event["requestContext"]["requestId"]
        if route is None:
            await self._reply(
                connection,
                json.dumps({"message": "Forbidden", "connectionId": peer.connection_id, "requestId": request_id}),
            )
            return
        outcome = await self.functions.invoke(route.function, event, route_key, peer.connection_id)
        if outcome.error is not None:
            await self._reply(connection, internal_error(connection, request_id))
            return
        if not route.two_way or not isinstance(outcome.result, dict) or outcome.result.get("body") is None:
            return
        body_out = outcome.result["body"]
        if not isinstance(body_out, str):
            await self._reply(connection, internal_error(connection, request_id))
        elif len(body_out.encode()) > MAX_MESSAGE_BYTES:
            await connection.close(TOO_BIG, "Message too big")
        else:
            await self._reply(connection, body_out)

    async def _reply(self, connection: Connection, text: str) -> None:
        if connection.state is State.OPEN and connection.socket is not None and not connection.socket.closed:
            await connection.send(text)

    async def _disconnect(self, connection: Connection, code: int, reason: str) -> None:
        route = self.api.routes.get("$disconnect")
        if route is not None:
            event = disconnect_event(connection.peer, code, reason)
            await self.functions.invoke(route.function, event, "$disconnect", connection.peer.connection_id)
