"""What is stored and sent: conversations and messages, as the protocol names their fields."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ConversationStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    CLOSED = "closed"
    CONVERTED = "converted"


class SenderType(StrEnum):
    AGENT = "agent"
    CONTACT = "contact"


def _is_none(value: Any) -> bool:
    return value is None


class Wire(BaseModel):
    """What is sent as JSON, one rule for every model: an optional field that is None is left out, a required
    one (a page's `nextCursor`) is sent as null. Nested models follow it too, so a page of messages is written
    as each message is."""

    # Validators are built on first use, not at import: a cold start pays only for the models it uses.
    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Per field, in pydantic's own serializer: as fast as exclude_none, and the documented schema unchanged.
        for field in cls.__pydantic_fields__.values():
            if not field.is_required() and field.exclude_if is None:
                field.exclude_if = _is_none
        if cls.__pydantic_complete__:  # built already (not deferred): build again with the rule
            cls.model_rebuild(force=True)

    def public(self) -> dict[str, Any]:
        """The JSON object a frame carries."""
        return self.model_dump(mode="json", by_alias=True)


class Record(Wire):
    model_config = ConfigDict(extra="ignore")


class Conversation(Record):
    id: str
    company_id: str = Field(alias="companyId")
    status: ConversationStatus = ConversationStatus.OPEN
    subject: str | None = None
    contact_id: str | None = Field(default=None, alias="contactId")
    assignee_user_id: str | None = Field(default=None, alias="assigneeUserId")
    created_by: str | None = Field(default=None, alias="createdBy")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    converted_at: str | None = Field(default=None, alias="convertedAt")
    awaiting_reply_since: str | None = Field(default=None, alias="awaitingReplySince")
    # Stored, never sent: its opening is not yet in the analytics counters (see shared.stores.conversations).
    uncounted: bool | None = Field(default=None, exclude=True)


class Message(Record):
    id: str
    conversation_id: str = Field(alias="conversationId")
    seq: int
    content: str | None = None
    sender_type: SenderType = Field(alias="senderType")
    from_user_id: str | None = Field(default=None, alias="fromUserId")
    contact_id: str | None = Field(default=None, alias="contactId")
    timestamp: str
    client_message_id: str | None = Field(default=None, alias="clientMessageId")
    external_id: str | None = Field(default=None, alias="externalId")
    edited_at: str | None = Field(default=None, alias="editedAt")
    deleted: bool | None = None
    deleted_at: str | None = Field(default=None, alias="deletedAt")
    uncounted: bool | None = Field(default=None, exclude=True)


class Notification(Record):
    id: str
    user_id: str = Field(alias="userId")
    type: str
    title: str
    body: str | None = None
    data: dict[str, Any] | None = None
    created_at: str = Field(alias="createdAt")
    read_at: str | None = Field(default=None, alias="readAt")
