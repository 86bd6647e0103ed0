"""The /conversations namespace: rooms per conversation, messages, typing, history and presence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.domain.authorization import require_author
from shared.domain.history import history_page
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.actions import (
    ConversationRef,
    CreateConversation,
    DeleteMessage,
    EditMessage,
    History,
    ListPresence,
    SendMessage,
    Typing,
    UpdateConversation,
)
from shared.protocol.clock import iso
from shared.protocol.frames import Outcome, event_frame
from shared.protocol.ids import message_id, new_id
from shared.protocol.namespaces import CONVERSATIONS
from shared.protocol.records import Conversation, ConversationStatus, Message, SenderType
from shared.protocol.rooms import company_room, conversation_room
from shared.stores.analytics import Counts
from shared.wiring.namespace import Namespace, Request
from shared.wiring.services import services
from shared.wiring.settings import settings

conversations = Namespace(CONVERSATIONS)


def _emit_to_conversation(
    request: Request, conversation_id: str, event: str, data: dict[str, Any], exclude_self: bool = False
) -> None:
    services().hub.emit(
        request.identity.company_id,
        conversation_room(conversation_id),
        event_frame(event, data, CONVERSATIONS),
        exclude=request.connection_id if exclude_self else None,
    )


def _announce(request: Request, conversation: Conversation) -> None:
    company_id = request.identity.company_id
    services().hub.emit(
        company_id,
        company_room(company_id),
        event_frame("conversation:updated", {"conversation": conversation.public()}, CONVERSATIONS),
    )


@conversations.action("join:conversation", ConversationRef)
def join(request: Request, data: ConversationRef) -> Outcome:
    runtime = services()
    identity = request.identity
    runtime.conversations.require(identity.company_id, data.conversation_id)
    room = conversation_room(data.conversation_id)
    runtime.connections.join(request.connection_id, identity, room, request.now)
    return Outcome({"conversationId": data.conversation_id, "room": room.name})


@conversations.action("leave:conversation", ConversationRef)
def leave(request: Request, data: ConversationRef) -> Outcome:
    runtime = services()
    identity = request.identity
    runtime.conversations.require(identity.company_id, data.conversation_id)
    room = conversation_room(data.conversation_id)
    runtime.connections.leave(request.connection_id, identity.company_id, room)
    return Outcome({"conversationId": data.conversation_id, "room": room.name})


@conversations.action("message:send", SendMessage)
def send(request: Request, data: SendMessage) -> Outcome:
    runtime = services()
    identity = request.identity
    conversation = runtime.conversations.require(identity.company_id, data.conversation_id)

    def compose(seq: int) -> Message:
        return Message(
            id=message_id(seq),
            seq=seq,
            conversationId=data.conversation_id,
            content=data.content,
            senderType=SenderType.AGENT,
            fromUserId=identity.user_id,
            timestamp=iso(request.now),
            clientMessageId=data.client_message_id,
        )

    # `agent:` keeps an agent's keys apart from contacts' (`contact:...`), whatever the user id looks like.
    sender_key = None if data.client_message_id is None else f"agent:{identity.user_id}#{data.client_message_id}"
    # Durable before anyone hears of it: the write comes first, the broadcast and the reply after.
    stored = runtime.conversations.add_message(identity.company_id, data.conversation_id, compose, sender_key)
    message = stored.message
    # Stored means sent: nothing after the write may turn the sender's answer into a failure.
    if stored.created:
        metrics.add_metric(name="Messages", unit=MetricUnit.Count, value=1)
        _after_stored(
            "broadcast", lambda: _emit_to_conversation(request, data.conversation_id, "message:new", message.public())
        )
    if message.uncounted:
        _after_stored("count", lambda: _count_message(request, conversation, message))
    return Outcome(
        {"id": message.id, "seq": message.seq, "clientMessageId": message.client_message_id}, event="message:sent"
    )


def _after_stored(effect: str, apply: Callable[[], object]) -> None:
    """Run an effect that follows a durable write; its failure is logged and measured, never answered."""
    try:
        apply()
    except Exception:
        logger.exception("effect after the write failed", extra={"effect": effect})
        metrics.add_metric(name="EffectsFailedAfterWrite", unit=MetricUnit.Count, value=1)


def _count_message(request: Request, conversation: Conversation, message: Message) -> None:
    """Count a stored message once: only the caller that claims its uncounted flag adds it (a retry that
    finds the flag still set, because the first attempt died before counting, counts it then)."""
    runtime = services()
    company_id = request.identity.company_id
    if runtime.conversations.claim_message_count(company_id, message):
        counts = Counts(agent_messages=1, response_seconds=_reply_time(request, conversation))
        runtime.analytics.count(company_id, request.now, counts)


def _reply_time(request: Request, conversation: Conversation) -> float | None:
    """Seconds since the contact's message this agent message is the first reply to, if it is one."""
    since = conversation.awaiting_reply_since
    if since is None:
        return None
    if not services().conversations.stop_awaiting(request.identity.company_id, conversation.id, since):
        return None
    return max(0.0, (request.now - datetime.fromisoformat(since)).total_seconds())


@conversations.action("message:edit", EditMessage)
def edit(request: Request, data: EditMessage) -> Outcome:
    store = services().conversations
    company_id = request.identity.company_id
    found = store.get_message(company_id, data.conversation_id, data.message_id)
    message = require_author(found, request.identity.user_id)
    changes = {"content": data.content, "editedAt": iso(request.now)}
    edited = store.modify_message(company_id, message, request.identity.user_id, changes, removes=[])
    _after_stored(
        "broadcast", lambda: _emit_to_conversation(request, data.conversation_id, "message:updated", edited.public())
    )
    return Outcome({"message": edited.public()})


@conversations.action("message:delete", DeleteMessage)
def delete(request: Request, data: DeleteMessage) -> Outcome:
    store = services().conversations
    company_id = request.identity.company_id
    found = store.get_message(company_id, data.conversation_id, data.message_id)
    message = require_author(found, request.identity.user_id)
    # A tombstone keeps the message's place in history, so a client that missed the event still learns of it.
    changes = {"deleted": True, "deletedAt": iso(request.now)}
    deleted = store.modify_message(company_id, message, request.identity.user_id, changes, removes=["content"])
    tombstone = {"id": deleted.id, "conversationId": deleted.conversation_id, "deletedAt": deleted.deleted_at}
    _after_stored(
        "broadcast", lambda: _emit_to_conversation(request, data.conversation_id, "message:deleted", tombstone)
    )
    return Outcome(tombstone)


@conversations.action("conversation:typing", Typing)
def typing(request: Request, data: Typing) -> Outcome:
    identity = request.identity
    services().conversations.require(identity.company_id, data.conversation_id)
    payload = {"conversationId": data.conversation_id, "userId": identity.user_id, "isTyping": data.is_typing}
    _emit_to_conversation(request, data.conversation_id, "conversation:typing", payload, exclude_self=True)
    return Outcome(payload)


@conversations.action("conversation:history", History)
def history(request: Request, data: History) -> Outcome:
    store = services().conversations
    company_id = request.identity.company_id
    store.require(company_id, data.conversation_id)
    config = settings()
    limit = min(data.limit, config.history_page_max)
    found = store.messages(company_id, data.conversation_id, data.after_seq, data.before_seq, limit)
    page = history_page(found, forward=data.after is not None, max_bytes=config.limits.max_outbound_bytes)
    return Outcome(page.public(), event="conversation:history")


@conversations.action("conversation:create", CreateConversation)
def create(request: Request, data: CreateConversation) -> Outcome:
    runtime = services()
    identity = request.identity
    now = iso(request.now)
    conversation = Conversation(
        id=new_id(),
        companyId=identity.company_id,
        status=data.status,
        subject=data.subject,
        contactId=data.contact_id,
        assigneeUserId=data.assignee_user_id,
        createdBy=identity.user_id,
        createdAt=now,
        updatedAt=now,
        convertedAt=now if data.status is ConversationStatus.CONVERTED else None,
    )
    # The creator is in the conversation from the start, as its first participant: joined first, so a
    # connection that may join no more rooms is refused before anything is stored.
    runtime.connections.join(request.connection_id, identity, conversation_room(conversation.id), request.now)
    runtime.conversations.create(conversation)
    _after_stored("announce", lambda: _announce(request, conversation))
    counts = Counts(conversations_created=1, conversations_converted=int(conversation.converted_at is not None))
    _after_stored("count", lambda: runtime.analytics.count(identity.company_id, request.now, counts))
    return Outcome({"conversation": conversation.public()})


@conversations.action("conversation:update", UpdateConversation)
def update(request: Request, data: UpdateConversation) -> Outcome:
    runtime = services()
    company_id = request.identity.company_id
    now = iso(request.now)
    converting = data.status is ConversationStatus.CONVERTED
    conversation, first_conversion = runtime.conversations.update(
        company_id, data.conversation_id, {**data.changes(), "updatedAt": now}, converted_at=now if converting else None
    )
    _after_stored("announce", lambda: _announce(request, conversation))
    if first_conversion:
        _after_stored(
            "count", lambda: runtime.analytics.count(company_id, request.now, Counts(conversations_converted=1))
        )
    return Outcome({"conversation": conversation.public()})


@conversations.action("presence:list", ListPresence)
def presence(request: Request, data: ListPresence) -> Outcome:
    # Room for the envelope: the rest of the 128 KiB is the list's.
    room_for_users = settings().limits.max_outbound_bytes - 1024
    page = services().connections.online_users(request.identity.company_id, data.cursor, data.limit, room_for_users)
    return Outcome({"users": page.users, "nextCursor": page.next_cursor}, event="presence:list")


handler = conversations.lambda_handler
