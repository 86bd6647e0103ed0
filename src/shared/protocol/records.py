"""What is stored and sent: conversations and messages, as the protocol names their fields."""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


class ConversationStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    CLOSED = "closed"
    CONVERTED = "converted"


class SenderType(StrEnum):
    AGENT = "agent"
    CONTACT = "contact"


@cache
def _optional_names(model: type[BaseModel]) -> frozenset[str]:
    """The names, as sent, of a model's fields that have a default: those a frame leaves out when unset."""
    return frozenset(field.alias or name for name, field in model.model_fields.items() if not field.is_required())


class Wire(BaseModel):
    """What is sent as JSON, one rule for every model: an optional field that is None is left out, a required
    one (a page's `nextCursor`) is sent as null. Nested models follow it too, so a page of messages is written
    as each message is."""

    # Validators are built on first use, not at import: a cold start pays only for the models it uses.
    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    # Without a return annotation pydantic keeps the fields' own schema for what is sent (docs/asyncapi.yaml);
    # with one it would document what the annotation says instead.
    @model_serializer(mode="wrap")
    def _leave_out_unset_options(self, serialize: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        dumped = serialize(self)
        optional = _optional_names(type(self))
        return {name: value for name, value in dumped.items() if value is not None or name not in optional}

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
