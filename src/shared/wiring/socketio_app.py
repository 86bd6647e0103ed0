"""Socket.IO connections: what the codec (shared.protocol.socketio) reads is performed by the same namespace actions
as native frames, and the session's own protocol (open packet, namespaces, heartbeat) is kept here.
Decisions 0036-0038."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from shared.delivery.hub import Hub
from shared.delivery.management_api import Delivery
from shared.domain.admission import expired
from shared.domain.sessions import Greeting
from shared.observability import MetricUnit, logger, metrics
from shared.protocol import socketio
from shared.protocol.frames import FrameError, frame_text
from shared.protocol.identity import identity_from_authorizer
from shared.protocol.recovery import Claim, parse_offset
from shared.protocol.websocket import WebSocketEvent
from shared.wiring.entry import LambdaResponse, respond
from shared.wiring.namespace import Addressed, Namespace, counted, run
from shared.wiring.services import Services
from shared.wiring.settings import Settings


def session_id(connection_id: str, namespace: str) -> str:
    """A namespace's socket id; opaque to the client, and distinct per namespace as Socket.IO's are."""
    return connection_id if namespace == socketio.DEFAULT_NAMESPACE else f"{connection_id}{namespace}"


class SocketIoApp:
    """Answers one Socket.IO message of a connection, as the route response's text (None: no answer)."""

    def __init__(self, namespaces: Mapping[str | None, Namespace]) -> None:
        self._namespaces = namespaces

    def handle(self, event: WebSocketEvent, runtime: Services) -> LambdaResponse:
        context = event.request_context
        message: socketio.ClientMessage
        try:
            text = frame_text(event.body, event.is_base64_encoded)
            message = socketio.read(text, runtime.config.limits.max_frame_bytes)
        except FrameError as error:
            message = socketio.RefusedMessage(error.code, error.message)  # not UTF-8: refused and counted like garbage
        return respond(
            self.answer(
                runtime, context.connection_id, context.raw_event.get("authorizer"), message, runtime.clock.now()
            )
        )

    def answer(
        self,
        runtime: Services,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        message: socketio.ClientMessage,
        now: datetime,
    ) -> str | None:
        if isinstance(message, socketio.ActionPacket):
            namespace = message.namespace
            return self._namespaces[message.handler].perform(
                runtime,
                connection_id,
                authorizer,
                message.frame,
                now,
                encoder=functools.partial(socketio.answer_packet, namespace),
                opened=namespace,
            )
        if isinstance(message, socketio.EnginePong | socketio.Ignored) and not expired(
            identity_from_authorizer(authorizer).exp, now, runtime.config.jwt_leeway_seconds
        ):
            # A pong answers the heartbeat: it costs this invocation and nothing more (no rate-limit write),
            # unless the token it connected with has expired: then it is held to the connection's record (which
            # auth:refresh extends) as any action is.
            return None
        namespace = getattr(message, "namespace", socketio.DEFAULT_NAMESPACE)
        return run(
            runtime,
            connection_id,
            Addressed(None, None, functools.partial(socketio.answer_packet, namespace)),
            decide=lambda: message,
            admit=lambda _: counted(runtime, connection_id, now),
            perform=lambda packet, _: self._session(runtime, connection_id, authorizer, packet, now),
        )

    def _session(
        self,
        runtime: Services,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        message: socketio.ClientMessage,
        now: datetime,
    ) -> str | None:
        """Engine.IO and namespace packets: everything but an event."""
        if isinstance(message, socketio.RefusedMessage):
            logger.info("Socket.IO message refused", extra={"code": str(message.code), "reason": message.message})
            return socketio.refused_answer(message)
        if isinstance(message, socketio.Ping):
            return socketio.pong(message.data)
        if isinstance(message, socketio.Close):
            runtime.hub.close(connection_id)
            return None
        if isinstance(message, socketio.UnknownNamespace):
            return socketio.connect_error(message.namespace)
        if isinstance(message, socketio.Connect):
            return self._connect(runtime, connection_id, authorizer, message, now)
        if isinstance(message, socketio.Disconnect):
            runtime.connections.close_namespace(connection_id, message.namespace)
            pid = runtime.connections.close_session(connection_id, message.namespace)
            if pid is not None:
                runtime.sessions.end(connection_id, pid)  # socket.disconnect(): this session never recovers
        # A Disconnect is done; a pong or an ignored message, admitted, has nothing more to do.
        return None

    @staticmethod
    def _connect(
        runtime: Services,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        message: socketio.Connect,
        now: datetime,
    ) -> str | None:
        namespace = message.namespace
        runtime.connections.open_namespace(connection_id, namespace)
        sid = session_id(connection_id, namespace)
        identity = identity_from_authorizer(authorizer)
        if not identity.recovery:
            return socketio.connected(namespace, sid)
        claim = Claim(identity, namespace, parse_offset(message.offset), identity.sessions_ended_at)
        # The replay, the CONNECT reply and the `session` event are posted, in that order (decision 0065).
        runtime.sessions.open(
            connection_id,
            claim,
            pid_text=message.pid,
            fresh_sid=sid,
            greeting=Greeting(connected=functools.partial(socketio.connected, namespace)),
            now=now,
        )
        return None


def open_packet(connection_id: str, config: Settings) -> str:
    return socketio.open_packet(
        connection_id,
        config.socketio_ping_interval_seconds * 1000,
        config.socketio_ping_timeout_seconds * 1000,
        config.limits.max_frame_bytes,
    )


def post_open_packet(hub: Hub, connection_id: str, config: Settings, closed: Callable[[], bool]) -> Delivery:
    """Post the open packet as soon as API Gateway lets us: it answers 410 until $connect returns
    (`Hub.send_once_connected`); `closed` says whether a 410 means what it says."""
    first = hub.send_once_connected(connection_id, open_packet(connection_id, config), closed)
    metrics.add_metric(name="OpenPacketAttempts", unit=MetricUnit.Count, value=first.attempts)
    if first.delivery is not Delivery.DELIVERED:
        # Its $connect failed or the client left: its $disconnect (or the sweep) forgets it.
        logger.info("open packet not delivered", extra={"delivery": first.delivery.value, "attempts": first.attempts})
    return first.delivery
