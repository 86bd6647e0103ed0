"""The roomcast contract this emitter checks and types what it publishes with.

Generated from docs/asyncapi.yaml by `make emitters` (local/roomcast_local/emitters.py): do not edit."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, Literal, NotRequired, TypedDict

DEFAULT_BUS = "roomcast"

# Detail-type -> the JSON schema of its detail, as roomcast validates it.
SCHEMAS: dict[str, dict[str, Any]] = json.loads(
    r"""
{
    "CampaignStarted": {
        "additionalProperties": false,
        "description": "`campaign:started` to the company's room.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "campaignId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Campaignid",
                "type": "string"
            },
            "name": {
                "maxLength": 256,
                "minLength": 1,
                "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$",
                "title": "Name",
                "type": "string"
            }
        },
        "required": [
            "companyId",
            "campaignId",
            "name"
        ],
        "title": "CampaignStarted",
        "type": "object"
    },
    "ContactTagged": {
        "additionalProperties": false,
        "description": "`contact:tagged` to the conversation's room.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "conversationId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Conversationid",
                "type": "string"
            },
            "contactId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Contactid",
                "type": "string"
            },
            "tag": {
                "maxLength": 128,
                "minLength": 1,
                "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$",
                "title": "Tag",
                "type": "string"
            }
        },
        "required": [
            "companyId",
            "conversationId",
            "contactId",
            "tag"
        ],
        "title": "ContactTagged",
        "type": "object"
    },
    "Disconnect": {
        "additionalProperties": false,
        "description": "End every connection of the user in the company now (a kick); their sessions are not recovered.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "userId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Userid",
                "type": "string"
            },
            "reason": {
                "anyOf": [
                    {
                        "maxLength": 256,
                        "minLength": 1,
                        "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$",
                        "type": "string"
                    },
                    {
                        "type": "null"
                    }
                ],
                "default": null,
                "title": "Reason"
            }
        },
        "required": [
            "companyId",
            "userId"
        ],
        "title": "Disconnect",
        "type": "object"
    },
    "Emit": {
        "additionalProperties": false,
        "description": "`event` with `data` to one room of the company.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "room": {
                "maxLength": 160,
                "pattern": "^(company|user|conversation|analytics):[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Room",
                "type": "string"
            },
            "event": {
                "maxLength": 64,
                "not": {
                    "enum": [
                        "analytics:update",
                        "campaign:started",
                        "contact:tagged",
                        "conversation:history",
                        "conversation:typing",
                        "conversation:updated",
                        "disconnect",
                        "message:deleted",
                        "message:new",
                        "message:sent",
                        "message:updated",
                        "metrics:update",
                        "notification:all_read",
                        "notification:list",
                        "notification:new",
                        "notification:read",
                        "pong",
                        "presence:changed",
                        "presence:list",
                        "session",
                        "status:offline",
                        "status:online"
                    ]
                },
                "pattern": "^[a-z][a-zA-Z0-9_]*:[a-z][a-zA-Z0-9_]*$",
                "title": "Event",
                "type": "string"
            },
            "data": {
                "additionalProperties": true,
                "title": "Data",
                "type": "object"
            }
        },
        "required": [
            "companyId",
            "room",
            "event"
        ],
        "title": "Emit",
        "type": "object"
    },
    "LeadAssigned": {
        "additionalProperties": false,
        "description": "Becomes a notification for the assignee.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "leadId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Leadid",
                "type": "string"
            },
            "assigneeUserId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Assigneeuserid",
                "type": "string"
            },
            "conversationId": {
                "anyOf": [
                    {
                        "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                        "type": "string"
                    },
                    {
                        "type": "null"
                    }
                ],
                "default": null,
                "title": "Conversationid"
            }
        },
        "required": [
            "companyId",
            "leadId",
            "assigneeUserId"
        ],
        "title": "LeadAssigned",
        "type": "object"
    },
    "MessageReceived": {
        "additionalProperties": false,
        "description": "A message from a contact (WhatsApp, email...), stored and broadcast like any message.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "conversationId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Conversationid",
                "type": "string"
            },
            "contactId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Contactid",
                "type": "string"
            },
            "content": {
                "maxLength": 16384,
                "minLength": 1,
                "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$",
                "title": "Content",
                "type": "string"
            },
            "externalId": {
                "anyOf": [
                    {
                        "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                        "type": "string"
                    },
                    {
                        "type": "null"
                    }
                ],
                "default": null,
                "title": "Externalid"
            }
        },
        "required": [
            "companyId",
            "conversationId",
            "contactId",
            "content"
        ],
        "title": "MessageReceived",
        "type": "object"
    },
    "Notify": {
        "additionalProperties": false,
        "description": "A stored notification for one user, pushed as `notification:new`.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "userId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Userid",
                "type": "string"
            },
            "type": {
                "maxLength": 64,
                "minLength": 1,
                "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$",
                "title": "Type",
                "type": "string"
            },
            "title": {
                "maxLength": 256,
                "minLength": 1,
                "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$",
                "title": "Title",
                "type": "string"
            },
            "body": {
                "anyOf": [
                    {
                        "maxLength": 4096,
                        "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$",
                        "type": "string"
                    },
                    {
                        "type": "null"
                    }
                ],
                "default": null,
                "title": "Body"
            },
            "data": {
                "anyOf": [
                    {
                        "additionalProperties": true,
                        "type": "object"
                    },
                    {
                        "type": "null"
                    }
                ],
                "default": null,
                "title": "Data"
            }
        },
        "required": [
            "companyId",
            "userId",
            "type",
            "title"
        ],
        "title": "Notify",
        "type": "object"
    },
    "RevokeTokens": {
        "additionalProperties": false,
        "description": "As `Disconnect`, and from now on the user's tokens issued before `issuedBefore` (or with no `iat`)\nare refused at the handshake and by `auth:refresh`.",
        "properties": {
            "companyId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Companyid",
                "type": "string"
            },
            "userId": {
                "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$",
                "title": "Userid",
                "type": "string"
            },
            "issuedBefore": {
                "format": "date-time",
                "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})$",
                "title": "Issuedbefore",
                "type": "string"
            }
        },
        "required": [
            "companyId",
            "userId",
            "issuedBefore"
        ],
        "title": "RevokeTokens",
        "type": "object"
    }
}
"""
)

# Detail-type -> what of the detail must fit a WebSocket frame (x-roomcast-frame).
FRAMES: dict[str, dict[str, Any]] = json.loads(
    r"""
{
    "Emit": {
        "maxBytes": 131072,
        "shape": {
            "event": {
                "$detail": "event"
            },
            "namespace": "/notifications",
            "data": {
                "$detail": "data"
            }
        }
    },
    "Notify": {
        "maxBytes": 130560,
        "shape": {
            "id": "00000000000000000000000000000000",
            "userId": {
                "$detail": "userId"
            },
            "type": {
                "$detail": "type"
            },
            "title": {
                "$detail": "title"
            },
            "body": {
                "$detail": "body"
            },
            "data": {
                "$detail": "data"
            },
            "createdAt": "2026-01-01T00:00:00.000Z",
            "readAt": "2026-01-01T00:00:00.000Z"
        }
    }
}
"""
)


class CampaignStartedDetail(TypedDict):
    """`campaign:started` to the company's room."""

    companyId: str
    campaignId: str
    name: str


class ContactTaggedDetail(TypedDict):
    """`contact:tagged` to the conversation's room."""

    companyId: str
    conversationId: str
    contactId: str
    tag: str


class DisconnectDetail(TypedDict):
    """End every connection of the user in the company now (a kick); their sessions are not recovered."""

    companyId: str
    userId: str
    reason: NotRequired[str | None]


class EmitDetail(TypedDict):
    """`event` with `data` to one room of the company."""

    companyId: str
    room: str
    event: str
    data: NotRequired[dict[str, Any]]


class LeadAssignedDetail(TypedDict):
    """Becomes a notification for the assignee."""

    companyId: str
    leadId: str
    assigneeUserId: str
    conversationId: NotRequired[str | None]


class MessageReceivedDetail(TypedDict):
    """A message from a contact (WhatsApp, email...), stored and broadcast like any message."""

    companyId: str
    conversationId: str
    contactId: str
    content: str
    externalId: NotRequired[str | None]


class NotifyDetail(TypedDict):
    """A stored notification for one user, pushed as `notification:new`."""

    companyId: str
    userId: str
    type: str
    title: str
    body: NotRequired[str | None]
    data: NotRequired[dict[str, Any] | None]


class RevokeTokensDetail(TypedDict):
    """As `Disconnect`, and from now on the user's tokens issued before `issuedBefore` (or with no `iat`)"""

    companyId: str
    userId: str
    issuedBefore: str


class TypedCalls(ABC):
    """One call per detail-type but Emit, keyword arguments in snake_case; each returns the event id."""

    @abstractmethod
    def put(self, detail_type: str, detail: dict[str, Any]) -> str:
        """Validate, check the frame rule, and put one event; its EventBridge id."""

    def campaign_started(self, *, campaign_id: str, name: str) -> str:
        """`campaign:started` to the company's room."""
        return self.put("CampaignStarted", {"campaignId": campaign_id, "name": name})

    def contact_tagged(self, *, conversation_id: str, contact_id: str, tag: str) -> str:
        """`contact:tagged` to the conversation's room."""
        return self.put("ContactTagged", {"conversationId": conversation_id, "contactId": contact_id, "tag": tag})

    def disconnect(self, *, user_id: str, reason: str | None = None) -> str:
        """End every connection of the user in the company now (a kick); their sessions are not recovered."""
        return self.put("Disconnect", {"userId": user_id, "reason": reason})

    def lead_assigned(self, *, lead_id: str, assignee_user_id: str, conversation_id: str | None = None) -> str:
        """Becomes a notification for the assignee."""
        return self.put("LeadAssigned", {"leadId": lead_id, "assigneeUserId": assignee_user_id, "conversationId": conversation_id})

    def message_received(self, *, conversation_id: str, contact_id: str, content: str, external_id: str | None = None) -> str:
        """A message from a contact (WhatsApp, email...), stored and broadcast like any message."""
        return self.put("MessageReceived", {"conversationId": conversation_id, "contactId": contact_id, "content": content, "externalId": external_id})

    def notify(self, *, user_id: str, type: str, title: str, body: str | None = None, data: dict[str, Any] | None = None) -> str:
        """A stored notification for one user, pushed as `notification:new`."""
        return self.put("Notify", {"userId": user_id, "type": type, "title": title, "body": body, "data": data})

    def revoke_tokens(self, *, user_id: str, issued_before: str) -> str:
        """As `Disconnect`, and from now on the user's tokens issued before `issuedBefore` (or with no `iat`)"""
        return self.put("RevokeTokens", {"userId": user_id, "issuedBefore": issued_before})
