"""EventBridge target: what backend services publish (Emit, Notify, MessageReceived, CampaignStarted,
ContactTagged, LeadAssigned), validated, checked against the event's company, and applied once per event id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.protocol.clock import iso, utc_now
from shared.protocol.errors import RoomcastError
from shared.protocol.frames import event_frame
from shared.protocol.ids import message_id
from shared.protocol.namespaces import ANALYTICS, CONVERSATIONS, NOTIFICATIONS
from shared.protocol.publishing import (
    DETAIL_TYPES,
    CampaignStarted,
    ContactTagged,
    Detail,
    Emit,
    LeadAssigned,
    MessageReceived,
    Notify,
)
from shared.protocol.records import Conversation, Message, SenderType
from shared.protocol.rooms import Room, RoomKind, company_room, conversation_room, parse_room, user_room
from shared.stores.analytics import Counts
from shared.wiring.namespace import validation_message
from shared.wiring.services import services

# EventBridge retries for up to 24 hours; a redelivery within two days is recognised.
IDEMPOTENCY = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=2 * 24 * 3600)
NAMESPACE_OF_ROOM = {
    RoomKind.COMPANY: CONVERSATIONS,
    RoomKind.CONVERSATION: CONVERSATIONS,
    RoomKind.USER: NOTIFICATIONS,
    RoomKind.ANALYTICS: ANALYTICS,
}


class Refused(Exception):
    """The event cannot be applied as sent; it is logged and dropped, never retried."""


def _require_conversation(company_id: str, conversation_id: str) -> None:
    if services().conversations.get(company_id, conversation_id) is None:
        raise Refused(f"conversation {conversation_id} is not one of company {company_id}'s")


def _checked_room(detail: Emit) -> Room:
    """Only rooms of the event's own company: its company and analytics rooms, its users, its conversations."""
    room = parse_room(detail.room)
    if room is None:
        raise Refused(f"unknown room {detail.room!r}")
    if room.kind in (RoomKind.COMPANY, RoomKind.ANALYTICS) and room.id != detail.company_id:
        raise Refused(f"room {detail.room} belongs to another company")
    if room.kind is RoomKind.CONVERSATION:
        _require_conversation(detail.company_id, room.id)
    return room


def emit(detail: Emit, _event_id: str) -> None:
    room = _checked_room(detail)
    frame = event_frame(detail.event, detail.data, NAMESPACE_OF_ROOM[room.kind])
    services().hub.emit(detail.company_id, room, frame)


def notify(detail: Notify, event_id: str) -> None:
    notification = detail.notification(created_at=iso(utc_now()))
    # Keyed by the event id too, so a retry after a partial failure finds the notification stored.
    if services().notifications.add(detail.company_id, notification, source_event=event_id):
        metrics.add_metric(name="Notifications", unit=MetricUnit.Count, value=1)
        services().hub.emit(
            detail.company_id,
            user_room(detail.user_id),
            event_frame("notification:new", {"notification": notification.public()}, NOTIFICATIONS),
        )


def message_received(detail: MessageReceived, event_id: str) -> None:
    """Each effect once across redeliveries: the conversation and the message are put once (conditional
    writes, the message keyed by its external id or this event), each counted by whoever claims its
    uncounted flag, each announced by the delivery that wrote it."""
    runtime = services()
    now = utc_now()
    company_id = detail.company_id
    store = runtime.conversations
    existing = store.get(company_id, detail.conversation_id)
    if existing is None:
        conversation = Conversation(
            id=detail.conversation_id,
            companyId=company_id,
            contactId=detail.contact_id,
            createdAt=iso(now),
            updatedAt=iso(now),
        )
        if store.open(conversation):
            runtime.hub.emit(
                company_id,
                company_room(company_id),
                event_frame("conversation:updated", {"conversation": conversation.public()}, CONVERSATIONS),
            )

    def compose(seq: int) -> Message:
        return Message(
            id=message_id(seq),
            seq=seq,
            conversationId=detail.conversation_id,
            content=detail.content,
            senderType=SenderType.CONTACT,
            contactId=detail.contact_id,
            timestamp=iso(now),
            externalId=detail.external_id,
        )

    # The same external message, or the same event, is stored once.
    sender_key = f"contact:{detail.contact_id}#{detail.external_id or 'event:' + event_id}"
    stored = store.add_message(company_id, detail.conversation_id, compose, sender_key)
    message = stored.message
    if stored.created:
        metrics.add_metric(name="Messages", unit=MetricUnit.Count, value=1)
        runtime.hub.emit(
            company_id,
            conversation_room(detail.conversation_id),
            event_frame("message:new", message.public(), CONVERSATIONS),
        )
    # An earlier delivery may have opened the conversation and failed before counting it.
    opened = (existing is None or bool(existing.uncounted)) and store.claim_opening_count(
        company_id, detail.conversation_id
    )
    counted = bool(message.uncounted) and store.claim_message_count(company_id, message)
    if counted:
        store.await_reply(company_id, detail.conversation_id, message.timestamp)
    if counted or opened:
        runtime.analytics.count(
            company_id, now, Counts(contact_messages=int(counted), conversations_created=int(opened))
        )


def campaign_started(detail: CampaignStarted, _event_id: str) -> None:
    services().hub.emit(
        detail.company_id,
        company_room(detail.company_id),
        event_frame("campaign:started", {"campaignId": detail.campaign_id, "name": detail.name}, CONVERSATIONS),
    )


def contact_tagged(detail: ContactTagged, _event_id: str) -> None:
    _require_conversation(detail.company_id, detail.conversation_id)
    data = {"conversationId": detail.conversation_id, "contactId": detail.contact_id, "tag": detail.tag}
    services().hub.emit(
        detail.company_id, conversation_room(detail.conversation_id), event_frame("contact:tagged", data, CONVERSATIONS)
    )


def lead_assigned(detail: LeadAssigned, event_id: str) -> None:
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
    notify(assignment, event_id)


APPLY: dict[type[Detail], Callable[[Any, str], None]] = {
    Emit: emit,
    Notify: notify,
    MessageReceived: message_received,
    CampaignStarted: campaign_started,
    ContactTagged: contact_tagged,
    LeadAssigned: lead_assigned,
}


def apply(event: dict[str, Any]) -> dict[str, str]:
    parsed = EventBridgeEvent(event)
    detail = DETAIL_TYPES[parsed.detail_type].model_validate(parsed.detail)
    APPLY[type(detail)](detail, parsed.get_id)
    return {"status": "applied"}


@instrumented(correlation_id_path="id")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    parsed = EventBridgeEvent(event)
    logger.append_keys(detail_type=parsed.detail_type, source=parsed.source)
    model = DETAIL_TYPES.get(parsed.detail_type)
    try:
        if model is None:
            raise Refused(f"no handler for detail-type {parsed.detail_type!r}")
        try:
            model.model_validate(parsed.detail)
        except ValidationError as error:
            raise Refused(validation_message(error).replace("data.", "detail.", 1)) from error
        IDEMPOTENCY.register_lambda_context(context)
        once = idempotent_function(
            data_keyword_argument="event", persistence_store=services().idempotency(), config=IDEMPOTENCY
        )(apply)
        result: dict[str, str] = once(event=event)
    except (Refused, RoomcastError) as refusal:
        logger.warning("event dropped", extra={"reason": str(refusal)})
        metrics.add_metric(name="EventsDropped", unit=MetricUnit.Count, value=1)
        return {"status": "dropped"}
    metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=1)
    return result
