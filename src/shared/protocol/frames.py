"""The wire protocol: decoding client frames and building server frames. Pure functions, no I/O."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from shared.protocol.errors import ErrorCode, RoomcastError

ACK_ID_MAX = 64
# Room for what wraps a list in a reply: the event or ack, its ackId, and the list's other fields.
LIST_ENVELOPE_BYTES = 512
ACTION_PATTERN = re.compile(r"^[A-Za-z0-9_.:$\-]{1,64}$")

Frame = dict[str, Any]
Entry = TypeVar("Entry")


class FrameError(RoomcastError):
    """A frame that cannot be acted on, with whatever of it could be read to address the reply."""

    def __init__(self, code: ErrorCode, message: str, ack_id: str | None = None, action: str | None = None) -> None:
        super().__init__(code, message)
        self.ack_id = ack_id
        self.action = action


@dataclass(frozen=True)
class InboundFrame:
    action: str
    data: dict[str, Any]
    ack_id: str | None


@dataclass(frozen=True)
class Outcome:
    """What an action produced for its caller: `data`, sent as the ack or as `event` when no ack was asked."""

    data: dict[str, Any]
    event: str | None = None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def decode_json(body: str) -> Any:
    """json.loads that refuses NaN, infinities, lone surrogates and nesting deep enough to exhaust the stack."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
        # Escaped lone surrogates ("\ud800") decode to text no store or socket can encode.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError) as error:
        raise FrameError(ErrorCode.BAD_REQUEST, "frame is not valid JSON") from error
    return value


def parse_frame(body: str | None, max_bytes: int) -> InboundFrame:
    if body is None or body == "":
        raise FrameError(ErrorCode.BAD_REQUEST, "frame is empty")
    if len(body) > max_bytes or len(body.encode("utf-8", "surrogatepass")) > max_bytes:
        raise FrameError(ErrorCode.PAYLOAD_TOO_LARGE, f"frame exceeds {max_bytes} bytes")
    value = decode_json(body)
    if not isinstance(value, dict):
        raise FrameError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")

    ack_id = value.get("ackId")
    if ack_id is not None and (not isinstance(ack_id, str) or not 0 < len(ack_id) <= ACK_ID_MAX):
        raise FrameError(ErrorCode.BAD_REQUEST, f"ackId must be a string of 1 to {ACK_ID_MAX} characters")

    action = value.get("action")
    if not isinstance(action, str) or not ACTION_PATTERN.fullmatch(action):
        raise FrameError(ErrorCode.BAD_REQUEST, "action must be a route name", ack_id=ack_id)

    data = value.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrameError(ErrorCode.BAD_REQUEST, "data must be a JSON object", ack_id=ack_id, action=action)
    return InboundFrame(action=action, data=data, ack_id=ack_id)


def event_frame(event: str, data: dict[str, Any], namespace: str | None = None) -> Frame:
    frame: Frame = {"event": event}
    if namespace is not None:
        frame["namespace"] = namespace
    frame["data"] = data
    return frame


def reply_frame(frame: InboundFrame, outcome: Outcome, namespace: str | None) -> Frame | None:
    """The single answer to an action: its ack when one was asked, else its reply event, if it has one."""
    if frame.ack_id is not None:
        return {"event": "ack", "ackId": frame.ack_id, "ok": True, "data": outcome.data}
    if outcome.event is None:
        return None
    return event_frame(outcome.event, outcome.data, namespace)


def encode(value: Any) -> str:
    """A frame, or any JSON value of one, as it goes on the wire."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encoded_size(value: Any) -> int:
    """Bytes `value` takes in a frame."""
    return len(encode(value).encode("utf-8"))


class ListRoom:
    """The one paging rule for a list in a reply (decision 0022): its entries, each measured as `encode` writes
    it with its comma, fit in `max_bytes` less the envelope's LIST_ENVELOPE_BYTES. `admits` takes an entry in
    when it fits, and from the first one that does not, none."""

    def __init__(self, max_bytes: int) -> None:
        self._left = max_bytes - LIST_ENVELOPE_BYTES

    def admits(self, entry: Any) -> bool:
        size = encoded_size(entry.model_dump(mode="json", by_alias=True) if isinstance(entry, BaseModel) else entry) + 1
        if size > self._left:
            self._left = -1
            return False
        self._left -= size
        return True


def fitting(entries: Sequence[Entry], max_bytes: int) -> list[Entry]:
    """The leading entries whose list, inside a reply's envelope, fits in `max_bytes`."""
    room = ListRoom(max_bytes)
    kept: list[Entry] = []
    for entry in entries:
        if not room.admits(entry):
            break
        kept.append(entry)
    return kept


def frame_text(body: str | None, base64_encoded: bool) -> str | None:
    """A frame's text: API Gateway base64-encodes binary frames, which must still be UTF-8 JSON."""
    if not base64_encoded or not body:
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise FrameError(ErrorCode.BAD_REQUEST, "frame is not UTF-8 text") from error
