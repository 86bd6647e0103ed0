"""Server-side publishing: the EventBridge detail of each detail-type, as roomcast's event handler validates it.

Backend services do not import this (a service's own `shared` package would collide with ours): docs/asyncapi.yaml
states these models, and the emitters (emitters/python, emitters/typescript) are generated from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from shared.protocol.actions import Content, Id, Text
from shared.protocol.frames import LIST_ENVELOPE_BYTES, encoded_size
from shared.protocol.ids import new_id
from shared.protocol.limits import limits
from shared.protocol.namespaces import NOTIFICATIONS
from shared.protocol.outbound import RESERVED_EVENT_NAMES
from shared.protocol.records import Notification
from shared.protocol.rooms import ROOM_NAME_PATTERN

EVENT_NAME_PATTERN = r"^[a-z][a-zA-Z0-9_]*:[a-z][a-zA-Z0-9_]*$"
DEFAULT_BUS = "roomcast"


@dataclass(frozen=True)
class FrameFit:
    """What of a detail must fit a frame, as data, so that emitters outside roomcast apply the very same rule
    (docs/asyncapi.yaml states it as the message's `x-roomcast-frame`, decision 0081). `shape` is the JSON that
    is measured, as `encode` writes it: `{"$detail": name}` stands for the detail's field `name`, left out when
    absent or null; anything else stands for itself. It may take the frame limit less `headroom` bytes."""

    shape: dict[str, Any]
    headroom: int = 0

    def max_bytes(self) -> int:
        return limits().max_outbound_bytes - self.headroom

    def measured(self, detail: dict[str, Any]) -> dict[str, Any]:
        shaped: dict[str, Any] = {}
        for name, value in self.shape.items():
            if isinstance(value, dict) and set(value) == {DETAIL_FIELD}:
                if detail.get(value[DETAIL_FIELD]) is not None:
                    shaped[name] = detail[value[DETAIL_FIELD]]
            else:
                shaped[name] = value
        return shaped

    def check(self, detail: Detail) -> None:
        limit = self.max_bytes()
        if encoded_size(self.measured(detail.model_dump(mode="json", by_alias=True))) > limit:
            raise ValueError(f"the {detail.detail_type} event would exceed the {limit}-byte frame limit")

    def document(self) -> dict[str, Any]:
        return {"maxBytes": self.max_bytes(), "shape": self.shape}


DETAIL_FIELD = "$detail"


def _field(name: str) -> dict[str, str]:
    return {DETAIL_FIELD: name}


# At their largest: an Emit's event in the longest namespace a room can give it, a notification with its id, its
# timestamps and read, alone in a notification:list page (so it fits notification:new too).
_AT = "2026-01-01T00:00:00.000Z"
EMIT_FRAME = FrameFit({"event": _field("event"), "namespace": NOTIFICATIONS, "data": _field("data")})
NOTIFICATION_FRAME = FrameFit(
    {
        "id": "0" * len(new_id(0)),
        **{name: _field(name) for name in ("userId", "type", "title", "body", "data")},
        "createdAt": _AT,
        "readAt": _AT,
    },
    headroom=LIST_ENVELOPE_BYTES,
)


class Detail(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)
    detail_type: ClassVar[str]
    # What must fit a frame, when the detail carries something pushed as it is.
    frame_fit: ClassVar[FrameFit | None] = None

    company_id: Id = Field(alias="companyId")

    def as_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True))

    @model_validator(mode="after")
    def _fits_a_frame(self) -> Self:
        if self.frame_fit is not None:
            self.frame_fit.check(self)
        return self


class Emit(Detail):
    """`event` with `data` to one room of the company."""

    detail_type: ClassVar[str] = "Emit"
    frame_fit: ClassVar[FrameFit | None] = EMIT_FRAME
    room: str = Field(pattern=ROOM_NAME_PATTERN, max_length=160)
    event: str = Field(
        pattern=EVENT_NAME_PATTERN, max_length=64, json_schema_extra={"not": {"enum": RESERVED_EVENT_NAMES}}
    )
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event")
    @classmethod
    def _not_reserved(cls, event: str) -> str:
        if event in RESERVED_EVENT_NAMES:
            raise ValueError(f"{event} is one of roomcast's own events")
        return event


class Notify(Detail):
    """A stored notification for one user, pushed as `notification:new`."""

    detail_type: ClassVar[str] = "Notify"
    frame_fit: ClassVar[FrameFit | None] = NOTIFICATION_FRAME
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


class MessageReceived(Detail):
    """A message from a contact (WhatsApp, email...), stored and broadcast like any message."""

    detail_type: ClassVar[str] = "MessageReceived"
    conversation_id: Id = Field(alias="conversationId")
    contact_id: Id = Field(alias="contactId")
    content: Content
    external_id: Id | None = Field(default=None, alias="externalId")


class CampaignStarted(Detail):
    """`campaign:started` to the company's room."""

    detail_type: ClassVar[str] = "CampaignStarted"
    campaign_id: Id = Field(alias="campaignId")
    name: Text = Field(min_length=1, max_length=256)


class ContactTagged(Detail):
    """`contact:tagged` to the conversation's room."""

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


# ISO 8601 with a time zone, years 1970 to 9999: `2026-11-26T03:44:21Z`, `2026-11-26T05:44:21.5+02:00`.
ISO_INSTANT = (
    r"^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}"  # the date, years 1970 to 9999
    r"T[0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})$"  # the time and its zone
)


class RevokeTokens(Detail):
    """As `Disconnect`, and from now on the user's tokens issued before `issuedBefore` (or with no `iat`)
    are refused at the handshake and by `auth:refresh`."""

    detail_type: ClassVar[str] = "RevokeTokens"
    user_id: Id = Field(alias="userId")
    issued_before: AwareDatetime = Field(
        alias="issuedBefore",
        # What the parsing below accepts, stated in the document for the emitters, which check no formats.
        json_schema_extra={"pattern": ISO_INSTANT},
    )
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
