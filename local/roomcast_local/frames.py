"""API Gateway's frame limit: a message may be up to 128 KiB, split into frames of at most 32 KiB; a larger
frame closes the connection with 1009 whatever the message's size.
https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html

aiohttp limits only whole messages, so this reads each frame's header before aiohttp's reader gets the bytes."""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_websocket import WebSocketError

from shared.protocol.limits import API_GATEWAY_FRAME_BYTES, API_GATEWAY_MESSAGE_BYTES

MAX_FRAME_BYTES = API_GATEWAY_FRAME_BYTES
MAX_MESSAGE_BYTES = API_GATEWAY_MESSAGE_BYTES
_DATA_OPCODES = {0x0, 0x1, 0x2}  # continuation, text, binary


def frame_header(buffer: bytes | bytearray) -> tuple[int, int, int] | None:
    """(opcode, payload length, header length) of the frame that starts `buffer`, or None if incomplete."""
    if len(buffer) < 2:
        return None
    opcode = buffer[0] & 0x0F
    length = buffer[1] & 0x7F
    extended = {126: 2, 127: 8}.get(length, 0)
    size = 2 + extended + (4 if buffer[1] & 0x80 else 0)
    if len(buffer) < size:
        return None
    if extended:
        length = int.from_bytes(buffer[2 : 2 + extended], "big")
    return opcode, length, size


class FrameScanner:
    """Follows the frame boundaries of a byte stream; reports the first data frame over the limit."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self._pending = bytearray()
        self._skip = 0

    def oversized(self, data: bytes) -> bool:
        if self._skip >= len(data):
            self._skip -= len(data)
            return False
        self._pending += data[self._skip :]
        self._skip = 0
        while (header := frame_header(self._pending)) is not None:
            opcode, length, size = header
            if opcode in _DATA_OPCODES and length > self.max_frame:
                return True
            available = len(self._pending) - size
            del self._pending[: size + min(length, available)]
            if length > available:
                self._skip = length - available
                return False
        return False


class _GuardedReader:
    def __init__(self, reader: Any, queue: Any, scanner: FrameScanner) -> None:
        self._reader = reader
        self._queue = queue
        self._scanner = scanner

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._scanner.oversized(data):
            limit = self._scanner.max_frame
            self._queue.set_exception(WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, f"Frame exceeds {limit} bytes"))
            return True, b""
        result: tuple[bool, bytes] = self._reader.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._reader.feed_eof()


class LimitedWebSocketResponse(web.WebSocketResponse):
    """A WebSocketResponse whose frames are held to API Gateway's limit; messages to `max_msg_size`."""

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        super()._post_start(request, protocol, writer)
        # aiohttp exposes no per-frame limit: wrap the reader it has just installed (a private slot).
        handler = request.protocol
        handler._payload_parser = _GuardedReader(handler._payload_parser, self._reader, FrameScanner())
