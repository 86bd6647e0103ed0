"""The `data` of each client action, validated at the boundary. Unknown fields and loose types are refused."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.ids import ID_PATTERN, seq_of
from shared.protocol.limits import limits
from shared.protocol.records import ConversationStatus

Id = Annotated[str, Field(pattern=ID_PATTERN)]
CONTENT_TOO_LARGE = "content_too_large"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Period(StrEnum):
    TODAY = "today"
    WEEK = "week"
    MONTH = "month"


def without_control_characters(text: str) -> str:
    """NUL and other C0 controls break clients and log pipelines; tabs and newlines are text."""
    if _CONTROL.search(text):
        raise ValueError("text must not contain control characters")
    return text


# The same rule, stated in the JSON schema for those who validate from docs/asyncapi.yaml (the emitters).
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Text = Annotated[str, AfterValidator(without_control_characters), Field(json_schema_extra={"pattern": TEXT_PATTERN})]


def _content_within_limit(content: str) -> str:
    limit = limits().max_content_bytes
    if len(content.encode("utf-8")) > limit:
        raise PydanticCustomError(CONTENT_TOO_LARGE, "content exceeds {limit} bytes", {"limit": limit})
    return content


# A message's text, from a client (SendMessage, EditMessage) or a backend service (MessageReceived).
# Documented as at most that many characters, which the byte limit implies (a character takes 1 to 4 bytes).
Content = Annotated[
    Text,
    Field(min_length=1, json_schema_extra={"maxLength": limits().max_content_bytes}),
    AfterValidator(_content_within_limit),
]


def validation_error(error: ValidationError, where: str = "data") -> RoomcastError:
    """The first problem, located under `where` (a frame's `data`, an event's `detail`), without echoing the
    input back. Content over the limit is `payload_too_large`, whatever else is wrong."""
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    too_large = [problem for problem in problems if problem["type"] == CONTENT_TOO_LARGE]
    first = (too_large or problems)[0]
    path = ".".join(str(part) for part in first["loc"])
    message = f"{where}.{path}: {first['msg']}" if path else f"{where}: {first['msg']}"
    return RoomcastError(ErrorCode.PAYLOAD_TOO_LARGE if too_large else ErrorCode.BAD_REQUEST, message)


class ActionData(BaseModel):
    # Validators are built on first use, not at import: a cold start pays only for the models it uses.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, frozen=True, defer_build=True)


class Empty(ActionData):
    pass


class ConversationRef(ActionData):
    conversation_id: Id = Field(alias="conversationId")


class SendMessage(ConversationRef):
    content: Content
    client_message_id: Id | None = Field(default=None, alias="clientMessageId")


class EditMessage(ConversationRef):
    message_id: Id = Field(alias="messageId")
    content: Content


class DeleteMessage(ConversationRef):
    message_id: Id = Field(alias="messageId")


class Typing(ConversationRef):
    is_typing: bool = Field(default=True, alias="isTyping")


Seq = Annotated[int, Field(ge=0, lt=10**12)]


def _cursor_seq(cursor: int | str | None) -> int | None:
    """A history cursor is a seq, or (as before seqs existed) a message id, which leads with its seq."""
    if cursor is None or isinstance(cursor, int):
        return cursor
    seq = seq_of(cursor)
    if seq is None:
        raise ValueError("must be a seq or a message id")
    return seq


class History(ConversationRef):
    after: Seq | Id | None = None
    before: Seq | Id | None = None
    limit: int = Field(default=50, ge=1, le=100)

    @model_validator(mode="after")
    def _a_range(self) -> Self:
        # Both cursors are read here, so a bad one is a bad request, not a failure in the handler; an
        # inverted range would reach DynamoDB as an invalid BETWEEN.
        after, before = self.after_seq, self.before_seq
        if after is not None and before is not None and after >= before:
            raise ValueError("after must be below before")
        return self

    @property
    def after_seq(self) -> int | None:
        return _cursor_seq(self.after)

    @property
    def before_seq(self) -> int | None:
        return _cursor_seq(self.before)


class CreateConversation(ActionData):
    subject: Text | None = Field(default=None, min_length=1, max_length=256)
    contact_id: Id | None = Field(default=None, alias="contactId")
    assignee_user_id: Id | None = Field(default=None, alias="assigneeUserId")
    status: ConversationStatus = Field(default=ConversationStatus.OPEN, strict=False)


class UpdateConversation(ConversationRef):
    subject: Text | None = Field(default=None, min_length=1, max_length=256)
    assignee_user_id: Id | None = Field(default=None, alias="assigneeUserId")
    status: ConversationStatus | None = Field(default=None, strict=False)

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.changes():
            raise ValueError("nothing to update: give status, assigneeUserId or subject")
        return self

    def changes(self) -> dict[str, str | None]:
        """The fields the client sent, by stored name; an explicit null assignee unassigns."""
        fields = self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"conversation_id"})
        return {name: value for name, value in fields.items() if value is not None or name == "assigneeUserId"}


class ListNotifications(ActionData):
    unread_only: bool = Field(default=False, alias="unreadOnly")
    limit: int = Field(default=20, ge=1, le=100)
    cursor: Id | None = None


class ReadNotification(ActionData):
    notification_id: Id = Field(alias="notificationId")


class AnalyticsRequest(ActionData):
    period: Period = Field(default=Period.TODAY, strict=False)


class RefreshToken(ActionData):
    token: str = Field(min_length=1, max_length=8192)


class ListPresence(ActionData):
    limit: int = Field(default=500, ge=1, le=1000)
    cursor: Id | None = None
