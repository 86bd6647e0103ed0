"""The /notifications namespace: a user's own notifications, with read receipts on all their connections."""

from __future__ import annotations

from shared.protocol.actions import Empty, ListNotifications, ReadNotification
from shared.protocol.clock import iso
from shared.protocol.frames import Outcome, fitting
from shared.protocol.namespaces import NOTIFICATIONS
from shared.protocol.outbound import AllRead, NotificationPage, ReadReceipt, answer, server_event
from shared.protocol.records import Wire
from shared.protocol.rooms import user_room
from shared.wiring.namespace import Namespace, Request

notifications = Namespace(NOTIFICATIONS)


def _tell_user(request: Request, event: str, data: Wire) -> None:
    identity = request.identity
    request.services.hub.emit(identity.company_id, user_room(identity.user_id), server_event(event, data))


@notifications.action("notification:list", ListNotifications)
def list_notifications(request: Request, data: ListNotifications) -> Outcome:
    store = request.services.notifications
    identity = request.identity
    page = store.page(identity.company_id, identity.user_id, data.unread_only, data.limit, data.cursor)
    # Paged by size as well as count: the next page starts after the last one that fits.
    kept = fitting(page.notifications, request.config.limits.max_outbound_bytes)
    more = page.has_more or len(kept) < len(page.notifications)
    listed = NotificationPage(
        notifications=kept,
        unreadCount=store.unread_count(identity.company_id, identity.user_id),
        nextCursor=kept[-1].id if more and kept else None,
    )
    return answer("notification:list", listed)


@notifications.action("notification:read", ReadNotification)
def read(request: Request, data: ReadNotification) -> Outcome:
    identity = request.identity
    notification = request.services.notifications.mark_read(
        identity.company_id, identity.user_id, data.notification_id, iso(request.now)
    )
    assert notification.read_at is not None, "a notification marked read carries its readAt"
    receipt = ReadReceipt(id=notification.id, readAt=notification.read_at)
    _tell_user(request, "notification:read", receipt)
    return answer("notification:read", receipt)


@notifications.action("notification:all_read", Empty)
def all_read(request: Request, _: Empty) -> Outcome:
    identity = request.identity
    count = request.services.notifications.mark_all_read(identity.company_id, identity.user_id, iso(request.now))
    _tell_user(request, "notification:all_read", AllRead(count=count))
    return answer("notification:all_read", AllRead(count=count))
