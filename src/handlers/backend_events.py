"""EventBridge target: what backend services publish (Emit, Notify, MessageReceived, CampaignStarted,
ContactTagged, LeadAssigned, Disconnect, RevokeTokens), validated, checked against the event's company, and
applied once per event id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.domain.access import KICKED, REVOKED
from shared.domain.authorization import publishable_room
from shared.domain.messages import contact_draft
from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.protocol.actions import validation_error
from shared.protocol.clock import iso
from shared.protocol.errors import RoomcastError
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
from shared.wiring.loading import loaded
from shared.wiring.services import Services, services

# EventBridge retries for up to 24 hours; a redelivery within two days is recognised.
IDEMPOTENCY = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=2 * 24 * 3600)


class Dropped(Exception):
    """The event cannot be applied as sent; it is logged and dropped, never retried."""


@instrumented(correlation_id_path="id")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    return receive(event, context, services())


def receive(event: dict[str, Any], context: LambdaContext, runtime: Services) -> dict[str, str]:
    parsed = EventBridgeEvent(event)
    logger.append_keys(detail_type=parsed.detail_type, source=parsed.source)
    try:
        detail = validated(parsed)
        IDEMPOTENCY.register_lambda_context(context)
        once = idempotent_function(
            data_keyword_argument="event", persistence_store=runtime.idempotency, config=IDEMPOTENCY
        )(apply)
        result: dict[str, str] = once(event=event, detail=detail, runtime=runtime)
    except (Dropped, RoomcastError) as refusal:
        logger.warning("event dropped", extra={"reason": str(refusal)})
        metrics.add_metric(name="EventsDropped", unit=MetricUnit.Count, value=1)
        return {"status": "dropped"}
    metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=1)
    return result


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


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
