"""The error codes of the protocol and the one exception that carries them to the client."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_ACTION = "unknown_action"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMITED = "rate_limited"
    TOKEN_EXPIRED = "token_expired"
    INTERNAL = "internal"


class RoomcastError(Exception):
    """A failure the client is told about. `message` is shown to the client, so it names no internals."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(what: str) -> RoomcastError:
    return RoomcastError(ErrorCode.NOT_FOUND, f"{what} not found")
