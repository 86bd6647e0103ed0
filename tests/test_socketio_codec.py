"""The Socket.IO codec (pure): every packet type, the original front end's argument shapes, hostile input,
round trips, the translation of native frames, and agreement with the rest of the code."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

import shared.protocol.codec as codecs
import shared.protocol.socketio as codec
from shared.protocol.codec import Codec, codec_of, encodings
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Frame, InboundFrame, Outcome, encode, event_frame, reply_frame
from shared.protocol.namespaces import ANALYTICS, CONVERSATIONS, NOTIFICATIONS
from shared.protocol.outbound import error_frame, presence_event
from shared.protocol.socketio import (
    ACK_ID_MAX_VALUE,
    MAX_DEPTH,
    NAMESPACE_MAX,
    ActionPacket,
    Close,
    Connect,
    Disconnect,
    EnginePacket,
    EnginePong,
    EngineType,
    Ignored,
    Packet,
    PacketType,
    Ping,
    RefusedMessage,
    UnknownNamespace,
    answer_packet,
    connect_error,
    connected,
    encode_engine,
    encode_packet,
    event_packet,
    open_packet,
    parse,
    read,
    refused_answer,
)
from shared.routes.analytics import analytics
from shared.routes.common import common
from shared.routes.conversations import conversations
from shared.routes.notifications import notifications
from shared.wiring.namespace import Namespace

LIMIT = 32 * 1024
FUNCTIONS: dict[str | None, Namespace] = {
    function.name: function for function in (common, conversations, notifications, analytics)
}


def refused(text: str) -> RefusedMessage:
    message = read(text, LIMIT)
    assert isinstance(message, RefusedMessage), message
    return message


def emitted(text: str) -> ActionPacket:
    message = read(text, LIMIT)
    assert isinstance(message, ActionPacket), message
    return message


# Engine.IO


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("1", Close()),
        ("2", Ping("")),
        ("2probe", Ping("probe")),
        ("3", EnginePong()),
        ("3probe", EnginePong()),
        ("5", Ignored("a WebSocket-only session has nothing to upgrade")),
        ("6", Ignored("a WebSocket-only session has nothing to upgrade")),
    ],
)
def test_engine_packets_mean_what_engine_io_v4_says(text: str, meaning: object) -> None:
    assert parse(text, LIMIT) == EnginePacket(EngineType(int(text[0])), text[1:])
    assert read(text, LIMIT) == meaning


def test_only_the_server_opens_a_session() -> None:
    assert parse('0{"sid":"x"}', LIMIT) == EnginePacket(EngineType.OPEN, '{"sid":"x"}')
    assert refused('0{"sid":"x"}').code is ErrorCode.BAD_REQUEST


def test_the_open_packet_announces_a_websocket_only_session() -> None:
    text = open_packet("sid-1", 25_000, 20_000, LIMIT)
    assert text == '0{"sid":"sid-1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":32768}'


def test_server_heartbeat_and_probe_answers() -> None:
    assert codec.PING == "2"
    assert codec.pong("probe") == "3probe"
    assert codec.pong() == "3"


# Socket.IO: CONNECT and DISCONNECT


@pytest.mark.parametrize(
    ("text", "namespace"),
    [
        ("40", "/"),
        ("40/conversations,", "/conversations"),
        ("40/notifications,", "/notifications"),
        ("40/analytics,", "/analytics"),
        ("40/analytics", "/analytics"),
        ('40/conversations,{"token":"abc"}', "/conversations"),
    ],
)
def test_connect_to_a_served_namespace(text: str, namespace: str) -> None:
    assert read(text, LIMIT) == Connect(namespace)


def test_connect_answers() -> None:
    assert connected("/", "s-1") == '40{"sid":"s-1"}'
    assert connected("/conversations", "s-1") == '40/conversations,{"sid":"s-1"}'


@pytest.mark.parametrize("text", ["40/random,", "40/random", "40/Conversations,", "40/conversations/x,"])
def test_an_unknown_namespace_is_answered_connect_error(text: str) -> None:
    message = read(text, LIMIT)
    assert isinstance(message, UnknownNamespace)
    assert connect_error(message.namespace) == f'44{message.namespace},{{"message":"Invalid namespace"}}'


@pytest.mark.parametrize(("text", "namespace"), [("41", "/"), ("41/conversations,", "/conversations")])
def test_disconnect_leaves_one_namespace(text: str, namespace: str) -> None:
    assert read(text, LIMIT) == Disconnect(namespace)
    assert codec.disconnect(namespace) == text


def test_an_ack_from_the_client_is_ignored_since_the_server_asks_for_none() -> None:
    assert parse('43/conversations,4["x"]', LIMIT) == Packet(PacketType.ACK, "/conversations", ["x"], 4)
    assert isinstance(read('43/conversations,4["x"]', LIMIT), Ignored)


# Socket.IO: EVENT to the native action model


def test_an_event_is_the_native_frame_it_stands_for() -> None:
    message = emitted('42/conversations,17["message:send",{"conversationId":"c-1","content":"hi"}]')
    assert message == ActionPacket(
        "/conversations",
        "/conversations",
        InboundFrame("message:send", {"conversationId": "c-1", "content": "hi"}, "17"),
    )


def test_without_a_callback_there_is_no_ack_id() -> None:
    assert emitted('42/conversations,["presence:list"]').frame == InboundFrame("presence:list", {}, None)


@pytest.mark.parametrize("namespace", ["/", "/conversations", "/notifications", "/analytics"])
@pytest.mark.parametrize("action", ["ping", "auth:refresh"])
def test_ping_and_auth_refresh_reach_the_default_function_from_any_namespace(namespace: str, action: str) -> None:
    prefix = "42" if namespace == "/" else f"42{namespace},"
    message = emitted(f'{prefix}3["{action}"]')
    assert (message.namespace, message.handler, message.frame.action) == (namespace, None, action)


@pytest.mark.parametrize(("name", "function"), [(name, function) for name, function in FUNCTIONS.items() if name])
def test_every_action_of_a_namespace_reaches_its_function(name: str, function: Namespace) -> None:
    for action in function.routes:
        assert emitted(f'42{name},["{action}",{{}}]').handler == function.name


def test_the_served_namespaces_are_the_functions_namespaces() -> None:
    assert {name or "/" for name in FUNCTIONS} == codec.NAMESPACES == {"/", CONVERSATIONS, NOTIFICATIONS, ANALYTICS}
    assert set(common.routes) == codec.ANY_NAMESPACE_ACTIONS


def test_the_default_namespace_reaches_only_the_default_function() -> None:
    assert emitted('42["message:send",{}]').handler is None


@pytest.mark.parametrize(
    ("namespace", "action", "argument", "data"),
    [
        ("/conversations", "join:conversation", "c-1", {"conversationId": "c-1"}),
        ("/conversations", "leave:conversation", "c-1", {"conversationId": "c-1"}),
        ("/conversations", "conversation:typing", "c-1", {"conversationId": "c-1"}),
        ("/notifications", "notification:read", "n-1", {"notificationId": "n-1"}),
        ("/analytics", "analytics:request", "week", {"period": "week"}),
    ],
)
def test_the_original_front_ends_bare_values(namespace: str, action: str, argument: str, data: dict[str, Any]) -> None:
    message = emitted(f"42{namespace},{json.dumps([action, argument])}")
    assert message.frame.data == data
    model: type[BaseModel] = FUNCTIONS[namespace].routes[action].model
    model.model_validate(data)


def test_notification_all_read_with_no_argument() -> None:
    message = emitted('42/notifications,5["notification:all_read"]')
    assert message.frame == InboundFrame("notification:all_read", {}, "5")
    notifications.routes["notification:all_read"].model.model_validate(message.frame.data)


def test_an_undefined_argument_is_no_data() -> None:
    # socket.emit("presence:list", undefined) is serialised by JSON.stringify as null.
    assert emitted('42/conversations,["presence:list",null]').frame.data == {}


def test_an_object_argument_is_the_data_whatever_the_action() -> None:
    data = {"conversationId": "c-1", "isTyping": False}
    assert emitted(f'42/conversations,["conversation:typing",{json.dumps(data)}]').frame.data == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('42/conversations,["join:conversation",7]', "data must be a JSON object or the conversationId string"),
        ('42/notifications,["notification:read",["n-1"]]', "data must be a JSON object or the notificationId string"),
        ('42/conversations,["message:send","hi"]', "data must be a JSON object"),
        ('42/analytics,["analytics:subscribe",true]', "data must be a JSON object"),
        ('42/conversations,["join:conversation","c-1","c-2"]', "an action takes one argument"),
    ],
)
def test_other_argument_shapes_are_refused_with_the_action_named(text: str, message: str) -> None:
    problem = refused(text)
    assert (problem.code, problem.message) == (ErrorCode.BAD_REQUEST, message)
    assert problem.action == json.loads(text[text.index("[") :])[0]


# Ack ids


@pytest.mark.parametrize(
    ("digits", "ack_id"), [("0", "0"), ("007", "7"), (str(ACK_ID_MAX_VALUE), str(ACK_ID_MAX_VALUE))]
)
def test_ack_ids_in_range_become_native_ack_ids(digits: str, ack_id: str) -> None:
    assert emitted(f'42/conversations,{digits}["ping"]').frame.ack_id == ack_id


@pytest.mark.parametrize("digits", [str(ACK_ID_MAX_VALUE + 1), "9" * 17, "1" * 5000])
def test_ack_ids_out_of_range_are_refused_without_an_ack(digits: str) -> None:
    problem = refused(f'42/conversations,{digits}["ping"]')
    assert (problem.code, problem.namespace, problem.ack_id) == (ErrorCode.BAD_REQUEST, "/conversations", None)


# Hostile and malformed input


@pytest.mark.parametrize(
    ("text", "namespace", "ack_id"),
    [
        ("", "/", None),
        ("9", "/", None),
        ("x", "/", None),
        ("4", "/", None),
        ("47", "/", None),
        ("4x", "/", None),
        ("4-2", "/", None),
        ("42", "/", None),
        ("42/conversations", "/conversations", None),
        ("42/conversations,17", "/conversations", "17"),
        ('42/conversations,17["message:send",{"conversationId"', "/conversations", "17"),
        ('42/conversations,17{"action":"ping"}', "/conversations", "17"),
        ("42/conversations,17[]", "/conversations", "17"),
        ("42/conversations,17null", "/conversations", "17"),
        ('42/conversations,17"ping"', "/conversations", "17"),
        ("42/conversations,17[1]", "/conversations", "17"),
        ("42/conversations,17[null]", "/conversations", "17"),
        ('42/conversations,17["has space"]', "/conversations", "17"),
        ('42/conversations,17["message:send",{"n":NaN}]', "/conversations", "17"),
        ('42/conversations,17["message:send",{"n":1e999}]', "/conversations", "17"),
        ('42/conversations,17["message:send",{"s":"\\ud800"}]', "/conversations", "17"),
        ('42/conversations,١٢["ping"]', "/conversations", None),
        ('42/unknown,3["ping"]', "/unknown", "3"),
        ("40[]", "/", None),
        ('40"token"', "/", None),
        ("40/conversations,5", "/conversations", None),
        ("41/conversations,{}", "/conversations", None),
        ("41/unknown,", "/unknown", None),
        ('44/conversations,{"message":"no"}', "/conversations", None),
        ("43/conversations,4{}", "/conversations", None),
        ("40/conv ersations,", "/", None),
        ("40/conversations\x00,", "/", None),
        ("40/é,", "/", None),
        ("40/" + "a" * NAMESPACE_MAX + ",", "/", None),
    ],
)
def test_malformed_messages_are_refused_and_addressed_as_far_as_they_were_read(
    text: str, namespace: str, ack_id: str | None
) -> None:
    problem = refused(text)
    assert (problem.code, problem.namespace, problem.ack_id) == (ErrorCode.BAD_REQUEST, namespace, ack_id)


@pytest.mark.parametrize(("depth", "allowed"), [(MAX_DEPTH, True), (MAX_DEPTH + 1, False), (50_000, False)])
def test_nesting_is_bounded(depth: int, allowed: bool) -> None:
    # The event array is the first level; its argument brings the rest.
    argument = "[" * (depth - 1) + "]" * (depth - 1)
    message = parse(f'42/conversations,["message:send",{argument}]', 10 * depth)
    assert isinstance(message, Packet) is allowed


def test_oversized_messages_are_refused_on_their_ack_before_their_payload_is_read() -> None:
    text = '42/conversations,9["message:send",{"content":"' + "é" * (LIMIT // 2) + '"}]'
    assert len(text) < LIMIT < len(text.encode())
    problem = refused(text)
    assert (problem.code, problem.namespace, problem.ack_id) == (ErrorCode.PAYLOAD_TOO_LARGE, "/conversations", "9")
    assert refused("3" + "x" * LIMIT).code is ErrorCode.PAYLOAD_TOO_LARGE


def test_a_huge_message_costs_no_more_than_its_size_check() -> None:
    started = time.perf_counter()
    for text in ("42/" + "a" * 10_000_000, "42/conversations," + "1" * 10_000_000, "42[" * 3_000_000):
        assert refused(text).code in {ErrorCode.BAD_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE}
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize(
    ("text", "namespace", "ack_id", "action"),
    [
        ('451-["message:send",{"_placeholder":true,"num":0}]', "/", None, "message:send"),
        ('451-/conversations,3["message:send",{"_placeholder":true,"num":0}]', "/conversations", "3", "message:send"),
        ('452-/conversations,["x y",{"_placeholder":true,"num":0}]', "/conversations", None, None),
        ('461-/conversations,3[{"_placeholder":true,"num":0}]', "/conversations", None, None),
    ],
)
def test_binary_attachments_are_refused_on_the_events_ack(
    text: str, namespace: str, ack_id: str | None, action: str | None
) -> None:
    problem = refused(text)
    assert (problem.code, problem.message) == (ErrorCode.BAD_REQUEST, "binary attachments are not supported")
    assert (problem.namespace, problem.ack_id, problem.action) == (namespace, ack_id, action)


@pytest.mark.parametrize("text", ['45-["x"]', '451["x"]', '45a-["x"]', '451234-["x"]', "45"])
def test_binary_packets_without_a_valid_attachment_count_are_malformed(text: str) -> None:
    assert refused(text).message == "binary packet without a valid attachment count"


@given(st.text(max_size=200))
def test_no_text_whatever_raises(text: str) -> None:
    message = read(text, LIMIT)
    if isinstance(message, RefusedMessage):
        refused_answer(message)


@given(
    st.sampled_from(["4", "40", "41", "42", "43", "44", "451-", "461-"]),
    st.sampled_from(["", "/conversations,", "/x", "/", ","]),
    st.sampled_from(["", "0", "17", "9" * 20, "-1"]),
    st.text(alphabet='[]{}",:0123456789nul ptraes\\', max_size=40),
)
def test_no_packet_shaped_text_whatever_raises(prefix: str, namespace: str, ack_id: str, payload: str) -> None:
    message = read(prefix + namespace + ack_id + payload, LIMIT)
    if isinstance(message, RefusedMessage):
        refused_answer(message)


# Encoding and round trips


PACKETS = [
    Packet(PacketType.CONNECT),
    Packet(PacketType.CONNECT, "/conversations", {"token": "t"}),
    Packet(PacketType.DISCONNECT, "/analytics"),
    Packet(PacketType.EVENT, "/", ["ping"]),
    Packet(PacketType.EVENT, "/conversations", ["message:send", {"content": "héllo ☃"}], 17),
    Packet(PacketType.ACK, "/conversations", [], 0),
    Packet(PacketType.ACK, "/conversations", [{"ok": True, "data": {}}], 12),
    Packet(PacketType.CONNECT_ERROR, "/random", {"message": "Invalid namespace"}),
    Packet(PacketType.CONNECT_ERROR, "/", "Not authorized"),
    Packet(PacketType.BINARY_EVENT, "/conversations", ["x", {"_placeholder": True, "num": 0}], 3, attachments=1),
    Packet(PacketType.BINARY_ACK, "/", [{"_placeholder": True, "num": 0}], 3, attachments=1),
]


@pytest.mark.parametrize("packet", PACKETS)
def test_packets_round_trip(packet: Packet) -> None:
    assert parse(encode_packet(packet), LIMIT) == packet


@pytest.mark.parametrize("kind", [kind for kind in EngineType if kind is not EngineType.MESSAGE])
def test_engine_packets_round_trip(kind: EngineType) -> None:
    packet = EnginePacket(kind, "probe")
    assert parse(encode_engine(packet), LIMIT) == packet


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
OBJECTS = st.dictionaries(st.text(max_size=8), JSON, max_size=4)


@given(
    st.sampled_from(sorted(codec.NAMESPACES)),
    st.sampled_from(sorted(route for function in FUNCTIONS.values() for route in function.routes)),
    OBJECTS,
    st.none() | st.integers(min_value=0, max_value=ACK_ID_MAX_VALUE),
)
def test_events_round_trip_to_the_native_frame(
    namespace: str, action: str, data: dict[str, Any], ack: int | None
) -> None:
    packet = Packet(PacketType.EVENT, namespace, [action, data], ack)
    assert parse(encode_packet(packet), LIMIT) == packet
    frame = emitted(encode_packet(packet)).frame
    assert frame == InboundFrame(action, data, None if ack is None else str(ack))


# Native frames to Socket.IO


def test_an_ack_callback_gets_one_argument_ok_and_data() -> None:
    message = emitted('42/conversations,17["join:conversation","c-1"]')
    reply = reply_frame(message.frame, Outcome({"conversationId": "c-1"}), CONVERSATIONS)
    assert reply is not None
    assert answer_packet(message.namespace, reply) == '43/conversations,17[{"ok":true,"data":{"conversationId":"c-1"}}]'


def test_a_failed_action_gets_ok_false_and_the_error_on_its_ack() -> None:
    message = emitted('42/conversations,3["join:conversation","other"]')
    failure = error_frame(RoomcastError(ErrorCode.NOT_FOUND, "conversation not found"), "3", "join:conversation")
    assert answer_packet(message.namespace, failure) == (
        '43/conversations,3[{"ok":false,"error":{"code":"not_found","message":"conversation not found"}}]'
    )


def test_without_a_callback_the_reply_event_comes_in_the_namespace_emitted_in() -> None:
    message = emitted('42/analytics,["ping"]')
    reply = reply_frame(message.frame, Outcome({"timestamp": "t"}, event="pong"), common.name)
    assert reply is not None
    assert answer_packet(message.namespace, reply) == '42/analytics,["pong",{"timestamp":"t"}]'


def test_without_a_callback_a_failure_is_the_error_event() -> None:
    failure = error_frame(RoomcastError(ErrorCode.RATE_LIMITED, "slow down"), None, "message:send")
    assert answer_packet("/conversations", failure) == (
        '42/conversations,["error",{"code":"rate_limited","message":"slow down","action":"message:send"}]'
    )


def test_a_refusal_goes_to_the_ack_when_there_is_one_else_to_the_error_event() -> None:
    assert refused_answer(refused('42/conversations,8["message:send","hi"]')) == (
        '43/conversations,8[{"ok":false,"error":{"code":"bad_request","message":"data must be a JSON object"}}]'
    )
    assert (
        refused_answer(refused("47")) == '42["error",{"code":"bad_request","message":"unknown Socket.IO packet type"}]'
    )


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (event_frame("message:new", {"id": "m-1"}, CONVERSATIONS), '42/conversations,["message:new",{"id":"m-1"}]'),
        (presence_event("u-1", online=True), '42/conversations,["status:online",{"userId":"u-1"}]'),
        (event_frame("notification:new", {}, NOTIFICATIONS), '42/notifications,["notification:new",{}]'),
        (event_frame("metrics:update", {"a": 1}, ANALYTICS), '42/analytics,["metrics:update",{"a":1}]'),
        (event_frame("anything", {}), '42["anything",{}]'),
    ],
)
def test_server_events_arrive_in_their_namespace(frame: dict[str, Any], text: str) -> None:
    assert event_packet(frame) == text


@given(st.sampled_from(sorted(codec.NAMESPACES)), st.text(max_size=30), OBJECTS)
def test_socketio_text_is_never_more_than_two_bytes_longer_than_the_native_frame(
    namespace: str, name: str, data: dict[str, Any]
) -> None:
    # What lets one size check on the native frame stand for both codecs, to within two bytes.
    for frame in (event_frame(name, data, None if namespace == "/" else namespace), event_frame(name, data)):
        assert len(event_packet(frame).encode()) < len(encode(frame).encode())
        assert len(answer_packet(namespace, frame).encode()) <= len(encode(frame).encode()) + 2
    failure = error_frame(RoomcastError(ErrorCode.INTERNAL, name), "9", None)
    assert len(answer_packet(namespace, failure).encode()) < len(encode(failure).encode())


# Codecs


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"EIO": "4", "transport": "websocket", "token": "t"}, Codec.SOCKETIO),
        ({"token": "t"}, Codec.NATIVE),
        ({"EIO": "3", "transport": "websocket"}, Codec.NATIVE),
        (None, Codec.NATIVE),
    ],
)
def test_the_query_chooses_the_codec(query: dict[str, str] | None, expected: Codec) -> None:
    assert codec_of(query) is expected


def test_a_mixed_room_is_encoded_once_per_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted(name: str, encoder: Callable[..., str]) -> Callable[..., str]:
        def encoding(frame: Frame, *offset: str | None) -> str:
            calls.append(name)
            return encoder(frame, *offset)

        return encoding

    monkeypatch.setattr(codecs, "encode", counted("native", encode))
    monkeypatch.setattr(codec, "event_packet", counted("socketio", event_packet))
    frame = event_frame("message:new", {"content": "é"}, CONVERSATIONS)
    members = [Codec.NATIVE, Codec.SOCKETIO, Codec.NATIVE, Codec.SOCKETIO, Codec.SOCKETIO]
    assert encodings(frame, members) == {
        Codec.NATIVE: encode(frame).encode(),
        Codec.SOCKETIO: event_packet(frame).encode(),
    }
    assert sorted(calls) == ["native", "socketio"]
    assert encodings(frame, [Codec.NATIVE, Codec.NATIVE]).keys() == {Codec.NATIVE}


# Agreement with the reference implementation, when it is installed (python-socketio is not a dependency yet).


def test_encodings_agree_with_python_socketio() -> None:
    pytest.importorskip("socketio")
    socketio_packet = importlib.import_module("socketio.packet")
    engineio_packet = importlib.import_module("engineio.packet")

    def reference(packet_type: int, data: Any = None, namespace: str | None = None, ack_id: int | None = None) -> str:
        payload = socketio_packet.Packet(packet_type, data=data, namespace=namespace, id=ack_id).encode()
        return str(engineio_packet.Packet(engineio_packet.MESSAGE, payload).encode())

    assert connected("/conversations", "s-1") == reference(0, {"sid": "s-1"}, "/conversations")
    assert connected("/", "s-1") == reference(0, {"sid": "s-1"}, "/")
    assert connect_error("/random") == reference(4, {"message": "Invalid namespace"}, "/random")
    assert codec.event("/conversations", "message:new", {"id": "m"}) == reference(
        2, ["message:new", {"id": "m"}], "/conversations"
    )
    result = {"ok": True, "data": {}}
    assert codec.ack("/analytics", 17, result) == reference(3, [result], "/analytics", 17)
    assert codec.disconnect("/notifications") == reference(1, None, "/notifications")
    handshake = {"sid": "x", "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": LIMIT}
    assert open_packet("x", 25000, 20000, LIMIT) == engineio_packet.Packet(engineio_packet.OPEN, handshake).encode()
    assert engineio_packet.Packet(engineio_packet.PING).encode() == codec.PING
    # And what the reference client sends, read back.
    sent = reference(2, ["join:conversation", "c-1"], "/conversations", 4)
    assert emitted(sent).frame == InboundFrame("join:conversation", {"conversationId": "c-1"}, "4")
