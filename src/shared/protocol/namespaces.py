"""The namespaces roomcast serves: the one list of them, which the codecs, the routes and the document follow."""

from __future__ import annotations

from typing import Final

CONVERSATIONS: Final = "/conversations"
NOTIFICATIONS: Final = "/notifications"
ANALYTICS: Final = "/analytics"
NAMESPACES: Final = (CONVERSATIONS, NOTIFICATIONS, ANALYTICS)
"""Every namespace with actions and events of its own; `ping` and `auth:refresh` belong to none."""
