"""The namespaces roomcast serves: the one list of them, which the codecs, the routes and the document follow."""

from __future__ import annotations

from typing import Final

from shared.protocol.rooms import RoomKind

CONVERSATIONS: Final = "/conversations"
NOTIFICATIONS: Final = "/notifications"
ANALYTICS: Final = "/analytics"
NAMESPACES: Final = (CONVERSATIONS, NOTIFICATIONS, ANALYTICS)
"""Every namespace with actions and events of its own; `ping` and `auth:refresh` belong to none."""
NAMESPACE_OF_ROOM: Final = {
    RoomKind.COMPANY: CONVERSATIONS,
    RoomKind.CONVERSATION: CONVERSATIONS,
    RoomKind.USER: NOTIFICATIONS,
    RoomKind.ANALYTICS: ANALYTICS,
}
"""The namespace whose connections hear a room's events (docs/protocol.md, Events from backend services)."""
