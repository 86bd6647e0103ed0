"""Who may change what: decisions on plain records, raising the protocol's error codes."""

from __future__ import annotations

from shared.protocol.errors import ErrorCode, RoomcastError, not_found
from shared.protocol.records import Message
from shared.protocol.rooms import Room, RoomKind, parse_room


def require_author(message: Message | None, user_id: str) -> Message:
    """Only a message's author edits or deletes it, and only while it is not deleted."""
    if message is None:
        raise not_found("message")
    if message.from_user_id != user_id:
        raise RoomcastError(ErrorCode.FORBIDDEN, "only the author can change this message")
    if message.deleted_at is not None:
        raise RoomcastError(ErrorCode.CONFLICT, "message was deleted")
    return message


def publishable_room(company_id: str, name: str) -> Room:
    """The room a backend event of `company_id` may reach: its company and analytics rooms, its users, and
    conversations (whether a conversation is the company's takes a read, which is the caller's)."""
    room = parse_room(name)
    if room is None:
        raise RoomcastError(ErrorCode.BAD_REQUEST, f"unknown room {name!r}")
    if room.kind in (RoomKind.COMPANY, RoomKind.ANALYTICS) and room.id != company_id:
        raise RoomcastError(ErrorCode.FORBIDDEN, f"room {name} belongs to another company")
    return room
