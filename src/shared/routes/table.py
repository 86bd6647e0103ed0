"""Which namespace performs an action: the routes of every namespace, loaded when first asked for."""

from __future__ import annotations

from functools import cache

from shared.protocol.frames import FrameError, InboundFrame
from shared.routes.common import common
from shared.wiring.namespace import Namespace


@cache
def namespaces() -> dict[str | None, Namespace]:
    """Loaded with the first Socket.IO message or native action of a namespace: a container serving only ping and
    auth:refresh never pays for the three namespaces' modules (decision 0050)."""
    from shared.routes.analytics import analytics
    from shared.routes.conversations import conversations
    from shared.routes.notifications import notifications

    return {
        None: common,
        conversations.name: conversations,
        notifications.name: notifications,
        analytics.name: analytics,
    }


def owner(frame: InboundFrame | FrameError) -> Namespace:
    """The namespace whose action a native frame names. Its own route sends it to that namespace's function, but
    with RoutePerAction false (decision 0072) every action arrives at $default; an unknown one is common's to
    refuse."""
    if not isinstance(frame, InboundFrame) or frame.action in common.routes:
        return common
    return next((namespace for namespace in namespaces().values() if frame.action in namespace.routes), common)
