"""Messages, whoever writes them (an agent's `message:send`, a contact's MessageReceived event): stored at the
conversation's next seq, announced as `message:new` to the conversation's room, counted once for analytics;
and the `conversation:updated` announcement of a conversation created, changed or opened by a contact."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.delivery.hub import Hub
from shared.domain.analytics import Analytics
from shared.domain.together import together
from shared.observability import MetricUnit, metrics
from shared.protocol.clock import iso
from shared.protocol.ids import message_id
from shared.protocol.outbound import ConversationState, server_event
from shared.protocol.records import Conversation, Message, SenderType
from shared.protocol.rooms import company_room, conversation_room
from shared.stores.analytics import Counts
from shared.stores.conversations import ConversationStore, Stored
from shared.stores.rooms import Recipients, RoomReader


@dataclass(frozen=True)
class Draft:
    """A message before its seq is known. `sender_key` (sender and their own id for the message) makes a
    retried or redelivered message stored once; without one, each attempt is a new message."""

    conversation_id: str
    content: str
    timestamp: str
    sender_type: SenderType
    sender_id: str
    sender_key: str | None
    client_message_id: str | None = None
    external_id: str | None = None

    def at(self, seq: int) -> Message:
        agent = self.sender_type is SenderType.AGENT
        return Message(
            id=message_id(seq),
            seq=seq,
            conversationId=self.conversation_id,
            content=self.content,
            senderType=self.sender_type,
            fromUserId=self.sender_id if agent else None,
            contactId=None if agent else self.sender_id,
            timestamp=self.timestamp,
            clientMessageId=self.client_message_id,
            externalId=self.external_id,
        )


def agent_draft(
    conversation_id: str, content: str, user_id: str, client_message_id: str | None, now: datetime
) -> Draft:
    # `agent:` and `contact:` keep the two kinds of sender apart, whatever their ids look like.
    key = None if client_message_id is None else f"agent:{user_id}#{client_message_id}"
    return Draft(
        conversation_id, content, iso(now), SenderType.AGENT, user_id, key, client_message_id=client_message_id
    )


def contact_draft(
    conversation_id: str, content: str, contact_id: str, external_id: str | None, *, event_id: str, now: datetime
) -> Draft:
    # The same external message, or else the same event, is stored once.
    key = f"contact:{contact_id}#{external_id or 'event:' + event_id}"
    return Draft(conversation_id, content, iso(now), SenderType.CONTACT, contact_id, key, external_id=external_id)


def reply_seconds(awaiting_since: str, now: datetime) -> float:
    """How long the contact waited for the reply that stopped the clock started at `awaiting_since`."""
    return max(0.0, (now - datetime.fromisoformat(awaiting_since)).total_seconds())


@dataclass(frozen=True)
class SendReads:
    """What a send reads before its write, all at once: none of it depends on another."""

    conversation: Conversation
    recipients: Recipients


@dataclass(frozen=True)
class Readers:
    """The stores `read_ahead` reads through, each on a DynamoDB client of its own: calls at once through one
    boto3 resource can garble each other's expressions, and the rate limit runs meanwhile through the
    services' own (`build_services`)."""

    conversations: ConversationStore
    members: RoomReader


class Messages:
    def __init__(
        self,
        conversations: ConversationStore,
        rooms: RoomReader,
        hub: Hub,
        analytics: Analytics,
        readers: Callable[[], Readers],
    ) -> None:
        self._conversations = conversations
        self._rooms = rooms
        self._hub = hub
        self._analytics = analytics
        # Made on the first send: only the conversations function sends, and their clients cost a cold start.
        self._make_readers = readers
        self._readers: Readers | None = None
        self._readers_made = threading.Lock()

    def readers(self) -> Readers:
        with self._readers_made:
            if self._readers is None:
                self._readers = self._make_readers()
            return self._readers

    def read_ahead(self, company_id: str, conversation_id: str) -> SendReads:
        """The conversation (tenancy: another company's is `not_found`) and its room's members, read
        concurrently. They only read, so a refused request that ran them has changed nothing."""
        readers = self.readers()
        conversation, recipients = together(
            lambda: readers.conversations.require(company_id, conversation_id),
            lambda: readers.members.recipients(company_id, conversation_room(conversation_id)),
        )
        return SendReads(conversation, recipients)

    def store(self, company_id: str, draft: Draft) -> Stored:
        return self._conversations.add_message(company_id, draft.conversation_id, draft.at, draft.sender_key)

    def announce(self, company_id: str, message: Message, recipients: Recipients | None = None) -> None:
        """A newly stored message to its conversation's room: to the members read ahead, else to those now.
        Sessions hear it only once it is in the journal, from members read after that (decision 0065): a
        session that joined after the read ahead is among them, and one that joins later replays it."""
        metrics.add_metric(name="Messages", unit=MetricUnit.Count, value=1)
        frame = server_event("message:new", message)
        room = conversation_room(message.conversation_id)
        if recipients is None or recipients.large:
            self._hub.emit(company_id, room, frame)
            return
        self._hub.deliver(recipients.plain(), frame)
        position = self._hub.record(company_id, room, frame)
        members = self._rooms.recipients(company_id, room, whole=True)
        self._hub.deliver(members.only_sessions(), frame, position)

    def announce_conversation(self, company_id: str, conversation: Conversation) -> None:
        frame = server_event("conversation:updated", ConversationState(conversation=conversation))
        self._hub.emit(company_id, company_room(company_id), frame)

    def count_agent_message(self, company_id: str, conversation: Conversation, message: Message, now: datetime) -> None:
        """Count a stored message once: only the caller that claims its uncounted flag adds it (a retry that
        finds the flag still set, because the first attempt died before counting, counts it then). A message
        without a clientMessageId has no retry that could find it (each attempt is a new message), so the send
        that stored it counts it without the claim's UpdateItem (decision 0068)."""
        if message.client_message_id is not None and not self._conversations.claim_message_count(company_id, message):
            return
        seconds = None
        since = conversation.awaiting_reply_since
        # Stopping the reply clock is a conditional write: of concurrent replies, the one that stops it is the first.
        if since is not None and self._conversations.stop_awaiting(company_id, conversation.id, since):
            seconds = reply_seconds(since, now)
        self._analytics.count(company_id, now, Counts(agent_messages=1, response_seconds=seconds))

    def receive(self, company_id: str, contact_id: str, draft: Draft, now: datetime) -> None:
        """A contact's message from a backend event, each effect once across redeliveries: the conversation
        and the message are put once (conditional writes), each announced by the delivery that wrote it,
        each counted by whoever claims its uncounted flag."""
        store = self._conversations
        conversation_id = draft.conversation_id
        existing = store.get(company_id, conversation_id)
        if existing is None:
            at = iso(now)
            opened = Conversation(
                id=conversation_id, companyId=company_id, contactId=contact_id, createdAt=at, updatedAt=at
            )
            if store.open(opened):
                self.announce_conversation(company_id, opened)
        stored = self.store(company_id, draft)
        message = stored.message
        if stored.created:
            self.announce(company_id, message)
        # An earlier delivery may have opened the conversation and failed before counting it.
        opening_counted = (existing is None or bool(existing.uncounted)) and store.claim_opening_count(
            company_id, conversation_id
        )
        message_counted = bool(message.uncounted) and store.claim_message_count(company_id, message)
        if message_counted:
            store.await_reply(company_id, conversation_id, message.timestamp)
        if message_counted or opening_counted:
            counts = Counts(contact_messages=int(message_counted), conversations_created=int(opening_counted))
            self._analytics.count(company_id, now, counts)
