"""Server events shared by several modules."""

from __future__ import annotations

from shared.protocol.frames import Frame, event_frame

CONVERSATIONS = "/conversations"
NOTIFICATIONS = "/notifications"
ANALYTICS = "/analytics"


def presence_event(user_id: str, online: bool) -> Frame:
    return event_frame("status:online" if online else "status:offline", {"userId": user_id}, CONVERSATIONS)
