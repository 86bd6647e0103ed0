"""Socket.IO connections: what the codec (shared.protocol.socketio) reads is performed by the same namespace actions
as native frames, and the session's own protocol (open packet, namespaces, heartbeat) is kept here.
Decisions 0036-0038."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from shared.delivery.hub import Hub
from shared.delivery.management_api import Delivery
from shared.domain.sessions import Greeting
from shared.observability import MetricUnit, logger, metrics
from shared.protocol import socketio
from shared.protocol.clock import utc_now
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import FrameError, frame_text
from shared.protocol.identity import identity_from_authorizer
from shared.protocol.recovery import Claim, parse_offset
from shared.protocol.websocket import WebSocketEvent
from shared.stores.connections import ConnectionStore
from shared.wiring.namespace import Closing, LambdaResponse, Namespace, admit, failed
from shared.wiring.services import Services
from shared.wiring.settings import Settings

# API Gateway answers 410 until $connect returns, which may take up to the integration's 29 s; the open
# packet is worth waiting for as long as the client waits for it (socket.io-client's `timeout`, 20 s).
OPEN_PACKET_WAIT_SECONDS = 20.0
_FIRST_RETRY_SECONDS = 0.005
_LONGEST_RETRY_SECONDS = 0.1
# A client that left at once must not hold the deferred function for the whole wait.
_CLOSED_CHECK_EVERY = 10


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
            message = socketio.Refused(error.code, error.message)  # not UTF-8: refused and counted like garbage
        answer = self.answer(runtime, context.connection_id, context.raw_event.get("authorizer"), message, utc_now())
        return {"statusCode": 200} if answer is None else {"statusCode": 200, "body": answer}

    def answer(
        self,
        runtime: Services,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        message: socketio.ClientMessage,
        now: datetime,
    ) -> str | None:
        if isinstance(message, socketio.Pong | socketio.Ignored):
            # A pong answers the heartbeat: it costs this invocation and nothing more (no rate-limit write),
            # unless the token it connected with has expired: then it is held to that as any action is.
            exp = identity_from_authorizer(authorizer).exp
            if exp is not None and now.timestamp() > exp + runtime.config.jwt_leeway_seconds:
                with contextlib.suppress(Closing):
                    default_answer = functools.partial(socketio.answer, socketio.DEFAULT_NAMESPACE)
                    admit(runtime, connection_id, None, now, encoder=default_answer)
            return None
        if isinstance(message, socketio.Emit):
            namespace = message.namespace
            reply = self._namespaces[message.handler].perform(
                runtime,
                connection_id,
                authorizer,
                message.frame,
                now,
                encoder=lambda frame: socketio.answer(namespace, frame),
                opened=namespace,
            )
            return None if reply is None else socketio.answer(namespace, reply)
        namespace = getattr(message, "namespace", socketio.DEFAULT_NAMESPACE)
        try:
            admit(runtime, connection_id, None, now, encoder=lambda frame: socketio.answer(namespace, frame))
            return self._session(runtime, connection_id, authorizer, message, now)
        except Closing:
            return None
        except RoomcastError as error:
            return socketio.answer(namespace, failed(error, None, None))
        except Exception:
            logger.exception("Socket.IO message failed")
            metrics.add_metric(name="InternalErrors", unit=MetricUnit.Count, value=1)
            internal = RoomcastError(ErrorCode.INTERNAL, "internal error, try again later")
            return socketio.answer(namespace, failed(internal, None, None))

    def _session(
        self,
        runtime: Services,
        connection_id: str,
        authorizer: dict[str, Any] | None,
        message: socketio.ClientMessage,
        now: datetime,
    ) -> str | None:
        """Engine.IO and namespace packets: everything but an event."""
        if isinstance(message, socketio.Refused):
            logger.info("Socket.IO message refused", extra={"code": str(message.code), "reason": message.message})
            return socketio.refusal(message)
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
            return None
        raise AssertionError(f"unhandled Socket.IO message {message!r}")  # pragma: no cover

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


def post_open_packet(
    hub: Hub,
    connection_id: str,
    config: Settings,
    closed: Callable[[], bool],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Post the open packet as soon as API Gateway lets us: it answers 410 until $connect returns, so a 410
    is retried (backing off from 5 ms to 100 ms) until the client would have given up waiting, or until
    `closed` says the 410 means what it says (checked about once a second, once retries are slow)."""
    data = open_packet(connection_id, config).encode("utf-8")
    deadline = clock() + OPEN_PACKET_WAIT_SECONDS
    pause = _FIRST_RETRY_SECONDS
    attempts = 0
    while True:
        attempts += 1
        delivery = hub.offer(connection_id, data)
        if delivery is not Delivery.GONE or clock() + pause > deadline:
            break
        if pause == _LONGEST_RETRY_SECONDS and attempts % _CLOSED_CHECK_EVERY == 0 and closed():
            break
        sleep(pause)
        pause = min(pause * 2, _LONGEST_RETRY_SECONDS)
    metrics.add_metric(name="OpenPacketAttempts", unit=MetricUnit.Count, value=attempts)
    if delivery is not Delivery.DELIVERED:
        # Its $connect failed or the client left: its $disconnect (or the sweep) forgets it.
        logger.info("open packet not delivered", extra={"delivery": delivery.value, "attempts": attempts})
    return delivery


def ping_all(store: ConnectionStore, hub: Hub, now: datetime, shard: int) -> int:
    """One Engine.IO ping to every Socket.IO connection of one shard of the heartbeat index that may be open;
    returns how many were pinged."""
    data = socketio.PING.encode("utf-8")
    pinged = 0
    for page in store.heartbeat_due(now, shard):
        hub.post(page, data)
        pinged += len(page)
    return pinged
