"""What the server sends: the `data` of every event and of every action's reply, as models, and the only way
handlers build them (`answer`, `server_event`).

`docs/asyncapi.yaml` is generated from these and from the action models (`make asyncapi`); tests/test_contract.py
checks that every frame a session sends validates against the committed document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Frame, Outcome, event_frame
from shared.protocol.namespaces import ANALYTICS, CONVERSATIONS, NOTIFICATIONS
from shared.protocol.records import Conversation, Message, Notification, Wire


class Outbound(Wire):
    model_config = ConfigDict(extra="forbid")


class Pong(Outbound):
    timestamp: str


class TokenRenewed(Outbound):
    exp: int | None = Field(description="The connection's new expiry, in seconds since the epoch; null: none")


class ConversationRoom(Outbound):
    conversation_id: str = Field(alias="conversationId")
    room: str


class AnalyticsRoom(Outbound):
    room: str


class Figures(Outbound):
    period: str
    total_messages: int = Field(alias="totalMessages")
    total_conversations: int = Field(alias="totalConversations")
    average_response_time: float = Field(alias="averageResponseTime", description="Seconds")
    conversion_rate: float = Field(alias="conversionRate", ge=0, le=1)
    timestamp: str


class MessageStored(Outbound):
    id: str
    seq: int
    client_message_id: str | None = Field(default=None, alias="clientMessageId")


class MessageEdited(Outbound):
    message: Message


class MessageRemoved(Outbound):
    id: str
    conversation_id: str = Field(alias="conversationId")
    deleted_at: str = Field(alias="deletedAt")


class TypingState(Outbound):
    conversation_id: str = Field(alias="conversationId")
    user_id: str = Field(alias="userId")
    is_typing: bool = Field(alias="isTyping")


class HistoryPage(Outbound):
    messages: list[Message]
    next_cursor: int | None = Field(
        alias="nextCursor",
        description="The seq to pass as the same cursor (`before`, or `after`) for the next page; null at the end. "
        "A page after a cursor with no messages and the cursor itself here: a lower seq is still being written, "
        "ask again in a moment",
    )


class ConversationState(Outbound):
    conversation: Conversation


class OnlineUser(Outbound):
    user_id: str = Field(alias="userId")
    connections: int = Field(
        ge=0, description="The user's open connections; 0 within the presence grace after their last one closed"
    )


class PresencePage(Outbound):
    users: list[OnlineUser]
    next_cursor: str | None = Field(alias="nextCursor", description="The next page's `cursor`; null at the end")


class UserStatus(Outbound):
    user_id: str = Field(alias="userId")


class PresenceChanged(Outbound):
    """A large company's presence changes over an interval, coalesced (PRESENCE_DIGEST_THRESHOLD)."""

    online: list[str] = Field(description="Users who came online (their first connection opened)")
    offline: list[str] = Field(
        description="Users who went offline (no connection for the presence grace); a user who came and went "
        "within the interval is in neither list"
    )


class NewNotification(Outbound):
    notification: Notification


class NotificationPage(Outbound):
    notifications: list[Notification]
    unread_count: int = Field(alias="unreadCount")
    next_cursor: str | None = Field(alias="nextCursor", description="The next page's `cursor`; null at the end")


class ReadReceipt(Outbound):
    id: str
    read_at: str = Field(alias="readAt")


class AllRead(Outbound):
    count: int


class StartedCampaign(Outbound):
    campaign_id: str = Field(alias="campaignId")
    name: str


class TaggedContact(Outbound):
    conversation_id: str = Field(alias="conversationId")
    contact_id: str = Field(alias="contactId")
    tag: str


class SessionStatus(Outbound):
    """Right after a session's connection opens (`recovery=1`): whether it took its session back."""

    session_id: str | None = Field(
        default=None,
        alias="sessionId",
        description="A native session's id, to send back as `session` in the query when reconnecting (Socket.IO "
        "clients get theirs as the CONNECT reply's `pid`); absent for Socket.IO",
    )
    recovered: bool = Field(
        description="True: every event missed since the offset sent back came before this, the rooms are "
        "restored. False: a new session; refetch state (history by seq, notification:list, presence:list)"
    )


class ErrorDetail(Outbound):
    code: ErrorCode
    message: str
    action: str | None = None


class Disconnected(Outbound):
    """Why the server is about to close this connection (a backend service's `Disconnect` or `RevokeTokens`)."""

    reason: str = Field(description="The Disconnect event's reason, `kicked` when it gave none, or `revoked`")


class ServerData(Outbound):
    """Whatever a backend service's `Emit` carries: roomcast passes it through."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class Event:
    """An event the server pushes to the rooms it concerns, in `namespace` (None: to a connection itself, in
    none of them, or for a session in its own namespace)."""

    namespace: str | None
    data: type[BaseModel]
    summary: str


EVENTS: dict[str, Event] = {
    "message:new": Event(CONVERSATIONS, Message, "A message stored in a conversation the connection joined"),
    "message:updated": Event(CONVERSATIONS, Message, "A message of the conversation was edited"),
    "message:deleted": Event(CONVERSATIONS, MessageRemoved, "A message of the conversation was deleted"),
    "conversation:typing": Event(CONVERSATIONS, TypingState, "Another member started or stopped typing"),
    "conversation:updated": Event(CONVERSATIONS, ConversationState, "A conversation of the company changed"),
    "status:online": Event(CONVERSATIONS, UserStatus, "A user of the company opened their first connection"),
    "status:offline": Event(CONVERSATIONS, UserStatus, "A user of the company closed their last connection"),
    "presence:changed": Event(
        CONVERSATIONS,
        PresenceChanged,
        "In a company with more users online than PRESENCE_DIGEST_THRESHOLD, instead of status:online and "
        "status:offline: the changes since the last digest, at most as often as PRESENCE_POSTS_PER_SECOND allows",
    ),
    "campaign:started": Event(CONVERSATIONS, StartedCampaign, "Published by a backend service"),
    "contact:tagged": Event(CONVERSATIONS, TaggedContact, "Published by a backend service"),
    "notification:new": Event(NOTIFICATIONS, NewNotification, "A notification for the connection's user"),
    "notification:read": Event(NOTIFICATIONS, ReadReceipt, "One of the user's notifications was read"),
    "notification:all_read": Event(NOTIFICATIONS, AllRead, "The user's notifications were all read"),
    "metrics:update": Event(ANALYTICS, Figures, "Today's figures changed (at most once a second)"),
    "session": Event(
        None,
        SessionStatus,
        "A session (recovery=1) was started or recovered; in Socket.IO, in each namespace, after the CONNECT reply",
    ),
    "disconnect": Event(
        None,
        Disconnected,
        "The user's access was ended (kick or revoke): the server closes this connection next. Native frames only;"
        " a Socket.IO connection gets a DISCONNECT packet per open namespace instead",
    ),
}


@dataclass(frozen=True)
class Reply:
    """An action's answer: the ack's `data`; without `ackId`, a reading action answers with an event named
    `event` carrying it, and any other action answers nothing."""

    data: type[BaseModel]
    event: str | None = None


REPLIES: dict[str, Reply] = {
    "ping": Reply(Pong, "pong"),
    "auth:refresh": Reply(TokenRenewed),
    "join:conversation": Reply(ConversationRoom),
    "leave:conversation": Reply(ConversationRoom),
    "message:send": Reply(MessageStored, "message:sent"),
    "message:edit": Reply(MessageEdited),
    "message:delete": Reply(MessageRemoved),
    "conversation:typing": Reply(TypingState),
    "conversation:history": Reply(HistoryPage, "conversation:history"),
    "conversation:create": Reply(ConversationState),
    "conversation:update": Reply(ConversationState),
    "presence:list": Reply(PresencePage, "presence:list"),
    "notification:list": Reply(NotificationPage, "notification:list"),
    "notification:read": Reply(ReadReceipt),
    "notification:all_read": Reply(AllRead),
    "analytics:subscribe": Reply(AnalyticsRoom),
    "analytics:unsubscribe": Reply(AnalyticsRoom),
    "analytics:request": Reply(Figures, "analytics:update"),
}


# What a backend service's `Emit` may not call its event: a client could not tell it from roomcast's own.
RESERVED_EVENT_NAMES: list[JsonValue] = [
    *sorted(set(EVENTS) | {reply.event for reply in REPLIES.values() if reply.event is not None})
]


def answer(action: str, data: Outbound) -> Outcome:
    """`action`'s answer as REPLIES documents it: of its model, and named its reply event when sent without ackId."""
    documented = REPLIES[action]
    if type(data) is not documented.data:
        raise TypeError(f"{action} answers {documented.data.__name__}, not {type(data).__name__}")
    return Outcome(data.public(), documented.event)


def server_event(name: str, data: Wire) -> Frame:
    """The frame of event `name` as EVENTS documents it: of its model, in its namespace."""
    documented = EVENTS[name]
    if type(data) is not documented.data:
        raise TypeError(f"{name} carries {documented.data.__name__}, not {type(data).__name__}")
    return event_frame(name, data.public(), documented.namespace)


def presence_event(user_id: str, online: bool) -> Frame:
    return server_event("status:online" if online else "status:offline", UserStatus(userId=user_id))


def error_frame(error: RoomcastError, ack_id: str | None, action: str | None) -> Frame:
    """What `error` stopped is answered with: the ack's error when an ack was asked, else an `error` event that
    names the action, as far as it could be read."""
    if ack_id is not None:
        detail = ErrorDetail(code=error.code, message=error.message)
        return {"event": "ack", "ackId": ack_id, "ok": False, "error": detail.public()}
    return {"event": "error", "data": ErrorDetail(code=error.code, message=error.message, action=action).public()}


def check_event(name: str, data: Any) -> None:
    """Raises if `data` is not what `name` is documented to carry; an `Emit` may name any other event."""
    event = EVENTS.get(name)
    (event.data if event else ServerData).model_validate(data)
