"""Rooms: named by the protocol, keyed in storage under their company so no id reaches another tenant."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.protocol.ids import ID_PATTERN


class RoomKind(StrEnum):
    COMPANY = "company"
    USER = "user"
    CONVERSATION = "conversation"
    ANALYTICS = "analytics"


# A room's name as a backend service writes it: `kind:id`, the id an identifier.
ROOM_NAME_PATTERN = f"^({'|'.join(RoomKind)}):{ID_PATTERN.removeprefix('^')}"


@dataclass(frozen=True)
class Room:
    kind: RoomKind
    id: str

    @property
    def name(self) -> str:
        """The name clients see in events, e.g. `conversation:c-1`."""
        return f"{self.kind}:{self.id}"

    def key(self, company_id: str) -> str:
        """The storage key, scoped by company."""
        return f"room#{company_id}#{self.name}"


def company_room(company_id: str) -> Room:
    return Room(RoomKind.COMPANY, company_id)


def user_room(user_id: str) -> Room:
    return Room(RoomKind.USER, user_id)


def conversation_room(conversation_id: str) -> Room:
    return Room(RoomKind.CONVERSATION, conversation_id)


def analytics_room(company_id: str) -> Room:
    return Room(RoomKind.ANALYTICS, company_id)


def parse_room(name: str) -> Room | None:
    """`kind:id` as a Room, or None when the kind is unknown or the id empty."""
    kind, _, room_id = name.partition(":")
    if not room_id or kind not in set(RoomKind):
        return None
    return Room(RoomKind(kind), room_id)


def home_rooms(company_id: str, user_id: str) -> tuple[Room, Room]:
    """Every connection is in its company's room and its user's room from $connect on."""
    return company_room(company_id), user_room(user_id)
