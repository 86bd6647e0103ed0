"""Who may change what: decisions on plain records, raising the protocol's error codes."""

from __future__ import annotations

from shared.protocol.errors import ErrorCode, RoomcastError, not_found
from shared.protocol.records import Message


def require_author(message: Message | None, user_id: str) -> Message:
    """Only a message's author edits or deletes it, and only while it is not deleted."""
    if message is None:
        raise not_found("message")
    if message.from_user_id != user_id:
        raise RoomcastError(ErrorCode.FORBIDDEN, "only the author can change this message")
    if message.deleted_at is not None:
        raise RoomcastError(ErrorCode.CONFLICT, "message was deleted")
    return message
