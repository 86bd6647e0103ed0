"""What backend services publish through EventBridge (docs/protocol.md, publishing): each detail type validated
against its model and checked against the event's company, then applied: `APPLY` maps a detail's model to the
function that applies it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from pydantic import ValidationError

from shared.domain.access import KICKED, REVOKED
from shared.domain.authorization import publishable_room
from shared.domain.messages import contact_draft
from shared.observability import MetricUnit, metrics
from shared.protocol.actions import validation_error
from shared.protocol.clock import iso
from shared.protocol.frames import event_frame
from shared.protocol.namespaces import NAMESPACE_OF_ROOM
from shared.protocol.outbound import NewNotification, StartedCampaign, TaggedContact, server_event
from shared.protocol.publishing import (
    DETAIL_TYPES,
    CampaignStarted,
    ContactTagged,
    Detail,
    Disconnect,
    Emit,
    LeadAssigned,
    MessageReceived,
    Notify,
    RevokeTokens,
)
from shared.protocol.rooms import RoomKind, company_room, conversation_room, user_room
from shared.wiring.services import Services


class Dropped(Exception):
    """The event cannot be applied as sent; it is logged and dropped, never retried."""


def validated(event: EventBridgeEvent) -> Detail:
    model = DETAIL_TYPES.get(event.detail_type)
    if model is None:
        raise Dropped(f"no handler for detail-type {event.detail_type!r}")
    try:
        return model.model_validate(event.detail)
    except ValidationError as error:
        raise Dropped(validation_error(error, "detail").message) from error


def apply(*, event: dict[str, Any], detail: Detail, runtime: Services) -> dict[str, str]:
    """Once per event id: `event` is what the idempotency record is keyed by, `detail` the same event read."""
    APPLY[type(detail)](runtime, detail, str(event["id"]))
    return {"status": "applied"}


def _require_conversation(runtime: Services, company_id: str, conversation_id: str) -> None:
    if runtime.conversations.get(company_id, conversation_id) is None:
        raise Dropped(f"conversation {conversation_id} is not one of company {company_id}'s")


def emit(runtime: Services, detail: Emit, _event_id: str) -> None:
    room = publishable_room(detail.company_id, detail.room)
    if room.kind is RoomKind.CONVERSATION:
        _require_conversation(runtime, detail.company_id, room.id)
    frame = event_frame(detail.event, detail.data, NAMESPACE_OF_ROOM[room.kind])
    runtime.hub.emit(detail.company_id, room, frame)


def notify(runtime: Services, detail: Notify, event_id: str) -> None:
    notification = detail.notification(created_at=iso(runtime.clock.now()))
    # Keyed by the event id too, so a retry after a partial failure finds the notification stored.
    if runtime.notifications.add(detail.company_id, notification, source_event=event_id):
        metrics.add_metric(name="Notifications", unit=MetricUnit.Count, value=1)
        frame = server_event("notification:new", NewNotification(notification=notification))
        runtime.hub.emit(detail.company_id, user_room(detail.user_id), frame)


def message_received(runtime: Services, detail: MessageReceived, event_id: str) -> None:
    now = runtime.clock.now()
    draft = contact_draft(
        detail.conversation_id, detail.content, detail.contact_id, detail.external_id, event_id=event_id, now=now
    )
    runtime.messages.receive(detail.company_id, detail.contact_id, draft, now)


def campaign_started(runtime: Services, detail: CampaignStarted, _event_id: str) -> None:
    started = StartedCampaign(campaignId=detail.campaign_id, name=detail.name)
    runtime.hub.emit(detail.company_id, company_room(detail.company_id), server_event("campaign:started", started))


def contact_tagged(runtime: Services, detail: ContactTagged, _event_id: str) -> None:
    _require_conversation(runtime, detail.company_id, detail.conversation_id)
    tagged = TaggedContact(conversationId=detail.conversation_id, contactId=detail.contact_id, tag=detail.tag)
    runtime.hub.emit(
        detail.company_id, conversation_room(detail.conversation_id), server_event("contact:tagged", tagged)
    )


def lead_assigned(runtime: Services, detail: LeadAssigned, event_id: str) -> None:
    data = {"leadId": detail.lead_id}
    if detail.conversation_id is not None:
        data["conversationId"] = detail.conversation_id
    assignment = Notify(
        companyId=detail.company_id,
        userId=detail.assignee_user_id,
        type="lead:assigned",
        title="A lead was assigned to you",
        data=data,
    )
    notify(runtime, assignment, event_id)


def disconnect(runtime: Services, detail: Disconnect, _event_id: str) -> None:
    runtime.kicks.end_access(detail.company_id, detail.user_id, detail.reason or KICKED, runtime.clock.now())


def revoke_tokens(runtime: Services, detail: RevokeTokens, _event_id: str) -> None:
    runtime.kicks.end_access(detail.company_id, detail.user_id, REVOKED, runtime.clock.now(), detail.issued_before)


APPLY: dict[type[Detail], Callable[[Services, Any, str], None]] = {
    Emit: emit,
    Notify: notify,
    MessageReceived: message_received,
    CampaignStarted: campaign_started,
    ContactTagged: contact_tagged,
    LeadAssigned: lead_assigned,
    Disconnect: disconnect,
    RevokeTokens: revoke_tokens,
}
