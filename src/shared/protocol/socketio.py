"""Socket.IO (protocol v5 over Engine.IO v4, WebSocket transport) as a second codec of the native frames.

Sans-I/O, in the style of python-websockets: `read` turns one WebSocket text message into what the
client asked, as plain data and never as an exception; the encoders turn the server's answers, native
frames included, into WebSocket text. Nothing here knows connections, DynamoDB or Lambda: the caller
keeps whatever state the protocol needs (which namespaces a connection opened, when it last answered
a ping). Mapping and limits: docs/decisions/0035-socketio-codec.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import ACTION_PATTERN, Frame, FrameError, InboundFrame, decode_json
from shared.protocol.namespaces import NAMESPACES as SERVED_NAMESPACES
from shared.protocol.outbound import error_frame

DEFAULT_NAMESPACE: Final = "/"
NAMESPACES: Final = frozenset({DEFAULT_NAMESPACE, *SERVED_NAMESPACES})
# Served by the default function whatever namespace they are emitted in (docs/protocol.md: those of any namespace).
ANY_NAMESPACE_ACTIONS: Final = frozenset({"ping", "auth:refresh"})
# The original front end's bare arguments, and the field of the action's data each one stands for (docs/socketio.md).
BARE_FIELDS: Final = {
    "join:conversation": "conversationId",
    "leave:conversation": "conversationId",
    "conversation:typing": "conversationId",
    "notification:read": "notificationId",
    "analytics:request": "period",
}
INVALID_NAMESPACE: Final = "Invalid namespace"

NAMESPACE_MAX = 128
MAX_DEPTH = 32
# Number.MAX_SAFE_INTEGER: socket.io-client numbers its acks from 0 and cannot match an id beyond it.
ACK_ID_MAX_VALUE = 2**53 - 1
_ACK_ID_MAX_DIGITS = len(str(ACK_ID_MAX_VALUE))
_ATTACHMENTS_MAX_DIGITS = 3
_DIGITS = frozenset("0123456789")
# Printable ASCII without spaces (a namespace is a URL path); the comma that ends it is never part of it.
_NAMESPACE = re.compile(rf"/[!-~]{{0,{NAMESPACE_MAX - 1}}}")


class EngineType(IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class PacketType(IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


_ENGINE_TYPES = {str(int(kind)): kind for kind in EngineType}
_PACKET_TYPES = {str(int(kind)): kind for kind in PacketType}
_EVENTS = (PacketType.EVENT, PacketType.BINARY_EVENT)
_ACKS = (PacketType.ACK, PacketType.BINARY_ACK)
_BINARY = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)


@dataclass(frozen=True)
class EnginePacket:
    """An Engine.IO packet other than `message` (a message carries a Socket.IO `Packet`)."""

    type: EngineType
    data: str = ""


@dataclass(frozen=True)
class Packet:
    """A Socket.IO packet. `data` is the JSON payload, None when absent (JSON null is never a valid payload)."""

    type: PacketType
    namespace: str = DEFAULT_NAMESPACE
    data: Any = None
    ack_id: int | None = None
    attachments: int | None = None


@dataclass(frozen=True)
class RefusedMessage:
    """A message that cannot be acted on, with what of it could be read to address the answer: the namespace,
    the native ack id of the client's request (an EVENT's, never an ACK's) and the action."""

    code: ErrorCode
    message: str
    namespace: str = DEFAULT_NAMESPACE
    ack_id: str | None = None
    action: str | None = None


@dataclass(frozen=True)
class Close:
    """The client closes the Engine.IO session."""


@dataclass(frozen=True)
class Ping:
    """The client pings (Engine.IO v3 habit, or an upgrade probe); answer `pong(data)`."""

    data: str


@dataclass(frozen=True)
class EnginePong:
    """The client answered the server's ping: the connection is alive."""


@dataclass(frozen=True)
class Ignored:
    """Valid, and nothing to do."""

    reason: str


@dataclass(frozen=True)
class Connect:
    """The client opens a namespace that is served; answer `connected(namespace, sid)`. `pid` and `offset`:
    what a reconnecting socket.io-client adds to its `auth` to recover its session (as sent, unchecked)."""

    namespace: str
    pid: object = None
    offset: object = None


@dataclass(frozen=True)
class UnknownNamespace:
    """The client opens a namespace that is not served; answer `connect_error(namespace)`."""

    namespace: str


@dataclass(frozen=True)
class Disconnect:
    """The client leaves one namespace; the connection stays."""

    namespace: str


@dataclass(frozen=True)
class ActionPacket:
    """`socket.emit(action, arg, ack?)`: the native frame it stands for, which namespace function performs it
    (`handler`, None for the default one) and where the answer goes (`namespace`, through `answer_packet`)."""

    namespace: str
    handler: str | None
    frame: InboundFrame


ClientMessage = (
    Close | Ping | EnginePong | Ignored | Connect | UnknownNamespace | Disconnect | ActionPacket | RefusedMessage
)


class _Unreadable(Exception):
    def __init__(self, refused: RefusedMessage) -> None:
        super().__init__(refused.message)
        self.refused = refused


def _refuse(
    message: str,
    namespace: str = DEFAULT_NAMESPACE,
    ack_id: str | None = None,
    action: str | None = None,
    code: ErrorCode = ErrorCode.BAD_REQUEST,
) -> _Unreadable:
    return _Unreadable(RefusedMessage(code, message, namespace, ack_id, action))


# Decoding: one WebSocket text message -> packet (syntax) -> what the client asked (meaning).


def read(text: str | None, max_bytes: int) -> ClientMessage:
    """What one WebSocket text message from a client asks; a `RefusedMessage` for anything malformed or unsupported."""
    decoded = parse(text, max_bytes)
    if isinstance(decoded, RefusedMessage):
        return decoded
    try:
        return _meaning(decoded)
    except _Unreadable as problem:
        return problem.refused


def parse(text: str | None, max_bytes: int) -> EnginePacket | Packet | RefusedMessage:
    """The packet one WebSocket text message carries, checked against the protocols' grammar and our bounds."""
    try:
        return _parse(text or "", max_bytes)
    except _Unreadable as problem:
        return problem.refused


def _parse(text: str, max_bytes: int) -> EnginePacket | Packet:
    if not text:
        raise _refuse("message is empty")
    kind = _ENGINE_TYPES.get(text[0])
    if kind is None:
        raise _refuse("unknown Engine.IO packet type")
    if kind is not EngineType.MESSAGE:
        _within(text, max_bytes, DEFAULT_NAMESPACE, None)
        return EnginePacket(kind, text[1:])
    # The header is read first, in bounded steps, so that even an oversized event is answered on its ack.
    packet_type, attachments, namespace, ack_id, start = _header(text)
    request = _request_ack_id(packet_type, ack_id)
    _within(text, max_bytes, namespace, request)
    data = _payload(text[start:], namespace, request)
    _check_payload(packet_type, data, namespace, request)
    return Packet(packet_type, namespace, data, ack_id, attachments)


def _request_ack_id(packet_type: PacketType, ack_id: int | None) -> str | None:
    """The native ackId an error can be answered on: an event's; an ACK's id numbers the server's own request."""
    return str(ack_id) if ack_id is not None and packet_type in _EVENTS else None


def _within(text: str, max_bytes: int, namespace: str, ack_id: str | None) -> None:
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise _refuse(f"message exceeds {max_bytes} bytes", namespace, ack_id, code=ErrorCode.PAYLOAD_TOO_LARGE)


def _header(text: str) -> tuple[PacketType, int | None, str, int | None, int]:
    """`4<type>[<attachments>-][<namespace>,][<ack id>]`: the parts and where the payload starts."""
    packet_type = _PACKET_TYPES.get(text[1:2])
    if packet_type is None:
        raise _refuse("unknown Socket.IO packet type")
    position = 2

    attachments: int | None = None
    if packet_type in _BINARY:
        dash = text.find("-", position, position + _ATTACHMENTS_MAX_DIGITS + 1)
        count = text[position:dash] if dash > position else ""
        if not count or not _DIGITS.issuperset(count):
            raise _refuse("binary packet without a valid attachment count")
        attachments = int(count)
        position = dash + 1

    namespace = DEFAULT_NAMESPACE
    if text.startswith("/", position):
        comma = text.find(",", position)
        end = len(text) if comma < 0 else comma
        namespace = text[position:end]
        if not _NAMESPACE.fullmatch(namespace):
            raise _refuse(f"namespace must be at most {NAMESPACE_MAX} printable ASCII characters, no spaces")
        position = end + 1 if comma >= 0 else end

    ack_id: int | None = None
    digits_end = position
    while digits_end < len(text) and text[digits_end] in _DIGITS and digits_end - position <= _ACK_ID_MAX_DIGITS:
        digits_end += 1
    if digits_end > position:
        if digits_end - position > _ACK_ID_MAX_DIGITS or int(text[position:digits_end]) > ACK_ID_MAX_VALUE:
            raise _refuse(f"ack id must be an integer from 0 to {ACK_ID_MAX_VALUE}", namespace)
        if packet_type not in _EVENTS + _ACKS:
            raise _refuse("only events and acknowledgements carry an ack id", namespace)
        ack_id = int(text[position:digits_end])
        position = digits_end
    return packet_type, attachments, namespace, ack_id, position


def _payload(body: str, namespace: str, ack_id: str | None) -> Any:
    if not body:
        return None
    try:
        value = decode_json(body)
    except FrameError as error:
        raise _refuse("payload is not valid JSON", namespace, ack_id) from error
    if not _depth_within(value, MAX_DEPTH):
        raise _refuse(f"payload nests deeper than {MAX_DEPTH} levels", namespace, ack_id)
    return value


def _depth_within(value: Any, limit: int) -> bool:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return True


def _check_payload(packet_type: PacketType, data: Any, namespace: str, ack_id: str | None) -> None:
    """The payload each packet type allows (the reference parser's rules)."""
    if packet_type is PacketType.CONNECT:
        valid = data is None or isinstance(data, dict)
        rule = "a CONNECT payload must be a JSON object"
    elif packet_type is PacketType.DISCONNECT:
        valid = data is None
        rule = "a DISCONNECT has no payload"
    elif packet_type is PacketType.CONNECT_ERROR:
        valid = isinstance(data, dict | str)
        rule = "a CONNECT_ERROR payload must be a JSON object or string"
    elif packet_type in _EVENTS:
        valid = isinstance(data, list) and len(data) > 0
        rule = "an EVENT payload must be a non-empty JSON array"
    else:
        valid = isinstance(data, list)
        rule = "an ACK payload must be a JSON array"
    if not valid:
        raise _refuse(rule, namespace, ack_id)


def _meaning(packet: EnginePacket | Packet) -> ClientMessage:
    if isinstance(packet, EnginePacket):
        return _engine_meaning(packet)
    namespace = packet.namespace
    served = namespace in NAMESPACES
    if packet.type is PacketType.CONNECT:
        if not served:
            return UnknownNamespace(namespace)
        auth = packet.data if isinstance(packet.data, dict) else {}
        return Connect(namespace, auth.get("pid"), auth.get("offset"))
    if packet.type is PacketType.ACK:
        return Ignored("the server asks clients for no acknowledgement")
    request = _request_ack_id(packet.type, packet.ack_id)
    if packet.type in _BINARY:
        action = packet.data[0] if packet.type is PacketType.BINARY_EVENT and _is_action(packet.data[0]) else None
        raise _refuse("binary attachments are not supported", namespace, request, action)
    if packet.type is PacketType.CONNECT_ERROR:
        raise _refuse("CONNECT_ERROR is sent by servers only", namespace)
    if not served:
        raise _refuse("namespace not served: use /conversations, /notifications or /analytics", namespace, request)
    if packet.type is PacketType.DISCONNECT:
        return Disconnect(namespace)
    return _emit(namespace, packet.data, request)


def _engine_meaning(packet: EnginePacket) -> ClientMessage:
    if packet.type is EngineType.OPEN:
        raise _refuse("only the server opens an Engine.IO session")
    if packet.type is EngineType.CLOSE:
        return Close()
    if packet.type is EngineType.PING:
        return Ping(packet.data)
    if packet.type is EngineType.PONG:
        return EnginePong()
    return Ignored("a WebSocket-only session has nothing to upgrade")


def _is_action(name: Any) -> bool:
    return isinstance(name, str) and ACTION_PATTERN.fullmatch(name) is not None


def _emit(namespace: str, arguments: list[Any], ack_id: str | None) -> ActionPacket:
    name, *rest = arguments
    if not _is_action(name):
        raise _refuse("event name must be an action name", namespace, ack_id)
    if len(rest) > 1:
        raise _refuse("an action takes one argument", namespace, ack_id, name)
    handler = None if name in ANY_NAMESPACE_ACTIONS or namespace == DEFAULT_NAMESPACE else namespace
    data = _action_data(name, rest[0] if rest else None, namespace, ack_id)
    return ActionPacket(namespace, handler, InboundFrame(action=name, data=data, ack_id=ack_id))


def _action_data(action: str, argument: Any, namespace: str, ack_id: str | None) -> dict[str, Any]:
    """The `data` object of the native frame: the argument itself, or the object a bare value stands for."""
    if argument is None:
        return {}
    if isinstance(argument, dict):
        return argument
    field = BARE_FIELDS.get(action)
    if field is None:
        raise _refuse("data must be a JSON object", namespace, ack_id, action)
    if not isinstance(argument, str):
        raise _refuse(f"data must be a JSON object or the {field} string", namespace, ack_id, action)
    return {field: argument}


# Encoding: what the server sends, as WebSocket text.


def _json(value: Any) -> str:
    # The native codec's serialisation (shared.protocol.frames.encode), for any JSON value rather than an object.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_engine(packet: EnginePacket) -> str:
    return f"{int(packet.type)}{packet.data}"


def encode_packet(packet: Packet) -> str:
    """The Engine.IO message carrying `packet`: `4<type>[<attachments>-][<namespace>,][<ack id>][<payload>]`."""
    parts = [str(int(EngineType.MESSAGE)), str(int(packet.type))]
    if packet.attachments is not None:
        parts.append(f"{packet.attachments}-")
    if packet.namespace != DEFAULT_NAMESPACE:
        parts.append(f"{packet.namespace},")
    if packet.ack_id is not None:
        parts.append(str(packet.ack_id))
    if packet.data is not None:
        parts.append(_json(packet.data))
    return "".join(parts)


PING: Final = encode_engine(EnginePacket(EngineType.PING))


def open_packet(sid: str, ping_interval_ms: int, ping_timeout_ms: int, max_payload: int) -> str:
    """The handshake the client waits for before it sends anything; no upgrade, WebSocket is the only transport."""
    handshake = {
        "sid": sid,
        "upgrades": [],
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    }
    return encode_engine(EnginePacket(EngineType.OPEN, _json(handshake)))


def pong(data: str = "") -> str:
    return encode_engine(EnginePacket(EngineType.PONG, data))


def connected(namespace: str, sid: str, pid: str | None = None) -> str:
    """The CONNECT reply; with `pid`, the private session id of connection state recovery (decision 0065)."""
    data = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
    return encode_packet(Packet(PacketType.CONNECT, namespace, data))


def connect_error(namespace: str) -> str:
    return encode_packet(Packet(PacketType.CONNECT_ERROR, namespace, {"message": INVALID_NAMESPACE}))


def disconnect(namespace: str) -> str:
    return encode_packet(Packet(PacketType.DISCONNECT, namespace))


def event(namespace: str, name: str, data: Any) -> str:
    return encode_packet(Packet(PacketType.EVENT, namespace, [name, data]))


def ack(namespace: str, ack_id: int, argument: Any) -> str:
    return encode_packet(Packet(PacketType.ACK, namespace, [argument], ack_id))


# Translation of native frames.


def answer_packet(namespace: str, frame: Frame) -> str:
    """The native answer to an `ActionPacket` (its ack, reply event or error), in the namespace the client emitted in.
    An ack's callback gets one argument, `{ok, data}` or `{ok: false, error}`; the ackId is the one `read` gave."""
    if frame["event"] == "ack":
        result = {"ok": True, "data": frame["data"]} if frame["ok"] else {"ok": False, "error": frame["error"]}
        return ack(namespace, int(frame["ackId"]), result)
    return event(namespace, frame["event"], frame["data"])


def refused_answer(refused: RefusedMessage) -> str:
    """The answer to a refused message: the error on its ack when it asked for one, else an `error` event."""
    error = RoomcastError(refused.code, refused.message)
    return answer_packet(refused.namespace, error_frame(error, refused.ack_id, refused.action))


def event_packet(frame: Frame, offset: str | None = None) -> str:
    """A native server event (`event_frame`) in the namespace that docs/protocol.md gives it; with `offset` (a session's
    event, decision 0065) that offset is its last argument, as Socket.IO's connection state recovery has it."""
    namespace = frame.get("namespace") or DEFAULT_NAMESPACE
    if offset is None:
        return event(namespace, frame["event"], frame["data"])
    return encode_packet(Packet(PacketType.EVENT, namespace, [frame["event"], frame["data"], offset]))
