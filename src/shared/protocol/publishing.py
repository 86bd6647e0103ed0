"""Server-side publishing: the EventBridge detail of each detail-type, and the producer API over put_events.

Backend services import `Publisher`; roomcast's event handler validates with the same models."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from shared.protocol.actions import Content, Id, Text
from shared.protocol.frames import LIST_ENVELOPE_BYTES, encoded_size, event_frame
from shared.protocol.ids import new_id
from shared.protocol.limits import limits
from shared.protocol.namespaces import NOTIFICATIONS
from shared.protocol.records import Notification

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_NAME_PATTERN = r"^[a-z][a-zA-Z0-9_]*:[a-z][a-zA-Z0-9_]*$"
DEFAULT_BUS = "roomcast"


class Detail(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)
    detail_type: ClassVar[str]

    company_id: Id = Field(alias="companyId")

    def as_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True))


class Emit(Detail):
    """`event` with `data` to one room of the company."""

    detail_type: ClassVar[str] = "Emit"
    room: str = Field(min_length=3, max_length=160)
    event: str = Field(pattern=EVENT_NAME_PATTERN, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_a_frame(self) -> Self:
        # Measured in the longest namespace a room can give it, so whatever the room, the event fits.
        limit = limits().max_outbound_bytes
        if encoded_size(event_frame(self.event, self.data, NOTIFICATIONS)) > limit:
            raise ValueError(f"the event would exceed the {limit}-byte frame limit")
        return self


class Notify(Detail):
    """A stored notification for one user, pushed as `notification:new`."""

    detail_type: ClassVar[str] = "Notify"
    user_id: Id = Field(alias="userId")
    type: Text = Field(min_length=1, max_length=64)
    title: Text = Field(min_length=1, max_length=256)
    body: Text | None = Field(default=None, max_length=4096)
    data: dict[str, Any] | None = None

    def notification(self, created_at: str) -> Notification:
        """The notification this event stores, new and unread."""
        return Notification(
            id=new_id(),
            userId=self.user_id,
            type=self.type,
            title=self.title,
            body=self.body,
            data=self.data,
            createdAt=created_at,
        )

    @model_validator(mode="after")
    def _fits_a_frame(self) -> Self:
        """Stored, the notification must fit `notification:new` and a `notification:list` page on its own,
        read as well: measured at its largest."""
        at = "2026-01-01T00:00:00.000Z"
        stored = self.notification(at).model_copy(update={"read_at": at})
        limit = limits().max_outbound_bytes - LIST_ENVELOPE_BYTES
        if encoded_size(stored.public()) > limit:
            raise ValueError(f"the notification would exceed the {limit}-byte frame limit")
        return self


class MessageReceived(Detail):
    """A message from a contact (WhatsApp, email...), stored and broadcast like any message."""

    detail_type: ClassVar[str] = "MessageReceived"
    conversation_id: Id = Field(alias="conversationId")
    contact_id: Id = Field(alias="contactId")
    content: Content
    external_id: Id | None = Field(default=None, alias="externalId")


class CampaignStarted(Detail):
    detail_type: ClassVar[str] = "CampaignStarted"
    campaign_id: Id = Field(alias="campaignId")
    name: Text = Field(min_length=1, max_length=256)


class ContactTagged(Detail):
    detail_type: ClassVar[str] = "ContactTagged"
    conversation_id: Id = Field(alias="conversationId")
    contact_id: Id = Field(alias="contactId")
    tag: Text = Field(min_length=1, max_length=128)


class LeadAssigned(Detail):
    """Becomes a notification for the assignee."""

    detail_type: ClassVar[str] = "LeadAssigned"
    lead_id: Id = Field(alias="leadId")
    assignee_user_id: Id = Field(alias="assigneeUserId")
    conversation_id: Id | None = Field(default=None, alias="conversationId")


class Disconnect(Detail):
    """End every connection of the user in the company now (a kick); their sessions are not recovered."""

    detail_type: ClassVar[str] = "Disconnect"
    user_id: Id = Field(alias="userId")
    reason: Text | None = Field(default=None, min_length=1, max_length=256)
    """Given to native connections in the `disconnect` event; `kicked` when absent."""


class RevokeTokens(Detail):
    """As `Disconnect`, and from now on the user's tokens issued before `issuedBefore` (or with no `iat`)
    are refused at the handshake and by `auth:refresh`."""

    detail_type: ClassVar[str] = "RevokeTokens"
    user_id: Id = Field(alias="userId")
    issued_before: AwareDatetime = Field(alias="issuedBefore")
    """ISO 8601 with a time zone (`Z` for UTC)."""

    @field_validator("issued_before", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        # pydantic would also read a number as seconds since the epoch: the contract is ISO 8601 text.
        if not isinstance(value, str):
            raise ValueError("issuedBefore must be ISO 8601 text, e.g. 2026-11-26T03:44:21Z")
        return value

    @field_validator("issued_before", mode="after")
    @classmethod
    def _a_token_instant(cls, moment: datetime) -> datetime:
        # Stored in UTC at a fixed width and compared as text: an instant outside the years a token's `iat`
        # (seconds since 1970) can name would not survive that, or not convert at all.
        try:
            in_utc = moment.astimezone(UTC)
        except OverflowError:
            in_utc = None
        if in_utc is None or in_utc.year < 1970:
            raise ValueError("issuedBefore must be an instant between 1970 and 9999 (UTC)")
        return moment

    @field_serializer("issued_before")
    def _utc(self, moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


DETAIL_TYPES: dict[str, type[Detail]] = {
    model.detail_type: model
    for model in (
        Emit,
        Notify,
        MessageReceived,
        CampaignStarted,
        ContactTagged,
        LeadAssigned,
        Disconnect,
        RevokeTokens,
    )
}


class PublishError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Publisher:
    """Typed helpers over `put_events` on roomcast's bus.

    publisher = Publisher(boto3.client("events"))
    publisher.publish(Notify(companyId="acme", userId="u-1", type="task", title="Call back"))
    """

    def __init__(self, client: EventBridgeClient, bus: str = DEFAULT_BUS, source: str = "crm.backend") -> None:
        self._client = client
        self._bus = bus
        self._source = source

    def publish(self, detail: Detail) -> str:
        """Put one event; returns its EventBridge id."""
        result = self._client.put_events(
            Entries=[
                {
                    "Source": self._source,
                    "DetailType": detail.detail_type,
                    "Detail": detail.as_json(),
                    "EventBusName": self._bus,
                }
            ]
        )
        (entry,) = result["Entries"]
        if "EventId" not in entry:
            raise PublishError(entry.get("ErrorCode", "Unknown"), entry.get("ErrorMessage", ""))
        return entry["EventId"]
