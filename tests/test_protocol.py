"""Frames in and out: decoding hostile input and shaping replies (pure functions)."""

from __future__ import annotations

import base64
import json

import pytest

from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import FrameError, InboundFrame, Outcome, frame_text, parse_frame, reply_frame
from shared.protocol.outbound import error_frame

LIMIT = 32 * 1024


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", ErrorCode.BAD_REQUEST),
        ("not json", ErrorCode.BAD_REQUEST),
        ("[1, 2]", ErrorCode.BAD_REQUEST),
        ('"action"', ErrorCode.BAD_REQUEST),
        ("null", ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "data": NaN}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "data": {"n": 1e999}}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "data": {"n": ' + "9" * 5000 + "}}", ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "data": {"s": "\\ud800"}}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "data": ' + "[" * 5000 + "]" * 5000 + "}", ErrorCode.BAD_REQUEST),
        ('{"data": {}}', ErrorCode.BAD_REQUEST),
        ('{"action": 7}', ErrorCode.BAD_REQUEST),
        ('{"action": "has space"}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping\\n"}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "data": [1]}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "ackId": 7}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "ackId": ""}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "ackId": "' + "a" * 65 + '"}', ErrorCode.BAD_REQUEST),
        ('{"action": "ping", "pad": "' + "x" * LIMIT + '"}', ErrorCode.PAYLOAD_TOO_LARGE),
    ],
)
def test_bad_frames_are_refused_with_their_code(body: str, code: ErrorCode) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(body, LIMIT)
    assert refused.value.code is code


def test_multibyte_frames_are_measured_in_bytes() -> None:
    body = json.dumps({"action": "ping", "pad": "é" * (LIMIT // 2)}, ensure_ascii=False)
    assert len(body) < LIMIT < len(body.encode())
    with pytest.raises(FrameError) as refused:
        parse_frame(body, LIMIT)
    assert refused.value.code is ErrorCode.PAYLOAD_TOO_LARGE


def test_a_valid_frame_keeps_its_parts() -> None:
    frame = parse_frame('{"action": "message:send", "data": {"content": "hi"}, "ackId": "7"}', LIMIT)
    assert frame == InboundFrame("message:send", {"content": "hi"}, "7")


def test_the_ack_id_survives_a_later_problem_so_the_reply_reaches_the_caller() -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame('{"action": "x", "data": "nope", "ackId": "9"}', LIMIT)
    assert (refused.value.ack_id, refused.value.action) == ("9", "x")


def test_with_an_ack_id_the_reply_is_the_ack_carrying_the_data() -> None:
    frame = InboundFrame("conversation:history", {}, "3")
    reply = reply_frame(frame, Outcome({"messages": []}, event="conversation:history"), "/conversations")
    assert reply == {"event": "ack", "ackId": "3", "ok": True, "data": {"messages": []}}


def test_without_an_ack_id_the_reply_is_the_event_named_for_the_action() -> None:
    frame = InboundFrame("conversation:history", {}, None)
    reply = reply_frame(frame, Outcome({"messages": []}, event="conversation:history"), "/conversations")
    assert reply == {"event": "conversation:history", "namespace": "/conversations", "data": {"messages": []}}


def test_without_an_ack_id_an_action_with_no_reply_event_is_silent() -> None:
    assert reply_frame(InboundFrame("join:conversation", {}, None), Outcome({"ok": 1}), "/conversations") is None


def test_errors_name_the_action_or_answer_the_ack() -> None:
    error = RoomcastError(ErrorCode.NOT_FOUND, "conversation not found")
    assert error_frame(error, None, "join:conversation") == {
        "event": "error",
        "data": {"code": "not_found", "message": "conversation not found", "action": "join:conversation"},
    }
    assert error_frame(error, "5", "join:conversation") == {
        "event": "ack",
        "ackId": "5",
        "ok": False,
        "error": {"code": "not_found", "message": "conversation not found"},
    }


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (base64.b64encode('{"action":"ping","data":{"é":1}}'.encode()).decode(), '{"action":"ping","data":{"é":1}}'),
        ("", ""),
    ],
)
def test_binary_frames_are_read_as_utf8_text(body: str, text: str) -> None:
    assert frame_text(body, base64_encoded=True) == text


@pytest.mark.parametrize("body", [base64.b64encode(b"\xff\xfe").decode(), "not base64!", "QQ="])
def test_binary_frames_that_are_not_utf8_text_are_bad_requests(body: str) -> None:
    with pytest.raises(FrameError) as refused:
        frame_text(body, base64_encoded=True)
    assert refused.value.code == ErrorCode.BAD_REQUEST
