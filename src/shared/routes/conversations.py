"""The /conversations namespace: rooms per conversation, messages, typing, history and presence."""

from __future__ import annotations

from shared.domain.authorization import require_author
from shared.domain.effects import after_stored
from shared.domain.history import history_page
from shared.domain.messages import SendReads, agent_draft
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
from shared.protocol.frames import Outcome
from shared.protocol.namespaces import CONVERSATIONS
from shared.protocol.outbound import (
    ConversationRoom,
    ConversationState,
    MessageEdited,
    MessageRemoved,
    MessageStored,
    OnlineUser,
    PresencePage,
    TypingState,
    answer,
    server_event,
)
from shared.protocol.records import Wire
from shared.protocol.rooms import conversation_room
from shared.wiring.namespace import Namespace, Request

conversations = Namespace(CONVERSATIONS)


def _emit_to_conversation(
    request: Request, conversation_id: str, event: str, data: Wire, exclude_self: bool = False
) -> None:
    request.services.hub.emit(
        request.identity.company_id,
        conversation_room(conversation_id),
        server_event(event, data),
        exclude=request.connection_id if exclude_self else None,
    )


@conversations.action("join:conversation", ConversationRef)
def join(request: Request, data: ConversationRef) -> Outcome:
    runtime = request.services
    identity = request.identity
    runtime.conversations.require(identity.company_id, data.conversation_id)
    room = conversation_room(data.conversation_id)
    runtime.connections.join(request.connection_id, identity, room, request.now)
    return answer("join:conversation", ConversationRoom(conversationId=data.conversation_id, room=room.name))


@conversations.action("leave:conversation", ConversationRef)
def leave(request: Request, data: ConversationRef) -> Outcome:
    runtime = request.services
    identity = request.identity
    runtime.conversations.require(identity.company_id, data.conversation_id)
    room = conversation_room(data.conversation_id)
    runtime.connections.leave(request.connection_id, identity.company_id, room)
    return answer("leave:conversation", ConversationRoom(conversationId=data.conversation_id, room=room.name))


def _read_for_send(request: Request, data: SendMessage) -> SendReads:
    return request.services.messages.read_ahead(request.identity.company_id, data.conversation_id)


@conversations.action_after_reads("message:send", SendMessage, _read_for_send)
def send(request: Request, data: SendMessage, ahead: SendReads) -> Outcome:
    """The shortest path (decision 0047): the reads ran alongside the rate limit; then one conditional write,
    then the posts, then the count."""
    messages = request.services.messages
    identity = request.identity
    draft = agent_draft(data.conversation_id, data.content, identity.user_id, data.client_message_id, request.now)
    # Durable before anyone hears of it: the write comes first, the broadcast and the reply after.
    stored = messages.store(identity.company_id, draft)
    message = stored.message
    # Stored means sent: nothing after the write may turn the sender's answer into a failure.
    if stored.created:
        after_stored("broadcast", lambda: messages.announce(identity.company_id, message, ahead.recipients))
    if message.uncounted:
        after_stored(
            "count",
            lambda: messages.count_agent_message(identity.company_id, ahead.conversation, message, request.now),
        )
    stored_as = MessageStored(id=message.id, seq=message.seq, clientMessageId=message.client_message_id)
    return answer("message:send", stored_as)


@conversations.action("message:edit", EditMessage)
def edit(request: Request, data: EditMessage) -> Outcome:
    store = request.services.conversations
    company_id = request.identity.company_id
    found = store.get_message(company_id, data.conversation_id, data.message_id)
    message = require_author(found, request.identity.user_id)
    edited = store.edit_message(company_id, message, request.identity.user_id, data.content, iso(request.now))
    after_stored("broadcast", lambda: _emit_to_conversation(request, data.conversation_id, "message:updated", edited))
    return answer("message:edit", MessageEdited(message=edited))


@conversations.action("message:delete", DeleteMessage)
def delete(request: Request, data: DeleteMessage) -> Outcome:
    store = request.services.conversations
    company_id = request.identity.company_id
    found = store.get_message(company_id, data.conversation_id, data.message_id)
    message = require_author(found, request.identity.user_id)
    deleted = store.delete_message(company_id, message, request.identity.user_id, iso(request.now))
    assert deleted.deleted_at is not None, "a deleted message carries its deletedAt"
    tombstone = MessageRemoved(id=deleted.id, conversationId=deleted.conversation_id, deletedAt=deleted.deleted_at)
    after_stored(
        "broadcast", lambda: _emit_to_conversation(request, data.conversation_id, "message:deleted", tombstone)
    )
    return answer("message:delete", tombstone)


@conversations.action("conversation:typing", Typing)
def typing(request: Request, data: Typing) -> Outcome:
    identity = request.identity
    request.services.conversations.require(identity.company_id, data.conversation_id)
    state = TypingState(conversationId=data.conversation_id, userId=identity.user_id, isTyping=data.is_typing)
    _emit_to_conversation(request, data.conversation_id, "conversation:typing", state, exclude_self=True)
    return answer("conversation:typing", state)


@conversations.action("conversation:history", History)
def history(request: Request, data: History) -> Outcome:
    store = request.services.conversations
    company_id = request.identity.company_id
    store.require(company_id, data.conversation_id)
    config = request.config
    limit = min(data.limit, config.history_page_max)
    found = store.messages(company_id, data.conversation_id, data.after_seq, data.before_seq, limit)
    page = history_page(found, after=data.after_seq, max_bytes=config.limits.max_outbound_bytes)
    return answer("conversation:history", page)


@conversations.action("conversation:create", CreateConversation)
def create(request: Request, data: CreateConversation) -> Outcome:
    changes = request.services.conversation_changes
    conversation = changes.create(request.connection_id, request.identity, data, request.now)
    return answer("conversation:create", ConversationState(conversation=conversation))


@conversations.action("conversation:update", UpdateConversation)
def update(request: Request, data: UpdateConversation) -> Outcome:
    conversation = request.services.conversation_changes.update(request.identity.company_id, data, request.now)
    return answer("conversation:update", ConversationState(conversation=conversation))


@conversations.action("presence:list", ListPresence)
def presence(request: Request, data: ListPresence) -> Outcome:
    page = request.services.connections.online_users(
        request.identity.company_id, data.cursor, data.limit, request.config.limits.max_outbound_bytes
    )
    users = [OnlineUser.model_validate(user) for user in page.users]
    return answer("presence:list", PresencePage(users=users, nextCursor=page.next_cursor))
