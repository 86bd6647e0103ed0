"""A conversation created or changed by an agent: stored, announced to the company (`conversation:updated`) and
counted for analytics, in that order; what follows the write never turns its answer into a failure."""

from __future__ import annotations

from datetime import datetime

from shared.domain.analytics import Analytics
from shared.domain.effects import after_stored
from shared.domain.messages import Messages
from shared.protocol.actions import CreateConversation, UpdateConversation
from shared.protocol.clock import iso
from shared.protocol.identity import Identity
from shared.protocol.ids import new_id
from shared.protocol.records import Conversation, ConversationStatus
from shared.protocol.rooms import conversation_room
from shared.stores.analytics import Counts
from shared.stores.connections import ConnectionStore
from shared.stores.conversations import ConversationStore


class ConversationChanges:
    def __init__(
        self, store: ConversationStore, connections: ConnectionStore, messages: Messages, analytics: Analytics
    ) -> None:
        self._store = store
        self._connections = connections
        self._messages = messages
        self._analytics = analytics

    def create(self, connection_id: str, creator: Identity, data: CreateConversation, now: datetime) -> Conversation:
        """A new conversation, with the creator's connection in its room from the start, as its first participant:
        joined first, so a connection that may join no more rooms is refused before anything is stored."""
        at = iso(now)
        conversation = Conversation(
            id=new_id(),
            companyId=creator.company_id,
            status=data.status,
            subject=data.subject,
            contactId=data.contact_id,
            assigneeUserId=data.assignee_user_id,
            createdBy=creator.user_id,
            createdAt=at,
            updatedAt=at,
            convertedAt=at if data.status is ConversationStatus.CONVERTED else None,
        )
        self._connections.join(connection_id, creator, conversation_room(conversation.id), now)
        self._store.create(conversation)
        company_id = creator.company_id
        after_stored("announce", lambda: self._messages.announce_conversation(company_id, conversation))
        counts = Counts(conversations_created=1, conversations_converted=int(conversation.converted_at is not None))
        after_stored("count", lambda: self._analytics.count(company_id, now, counts))
        return conversation

    def update(self, company_id: str, data: UpdateConversation, now: datetime) -> Conversation:
        """The conversation with the fields the client sent; its first conversion is counted once."""
        at = iso(now)
        converting = data.status is ConversationStatus.CONVERTED
        conversation, first_conversion = self._store.update(
            company_id,
            data.conversation_id,
            {**data.changes(), "updatedAt": at},
            converted_at=at if converting else None,
        )
        after_stored("announce", lambda: self._messages.announce_conversation(company_id, conversation))
        if first_conversion:
            after_stored("count", lambda: self._analytics.count(company_id, now, Counts(conversations_converted=1)))
        return conversation
