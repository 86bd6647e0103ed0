// The roomcast contract this emitter checks and types what it publishes with. Generated from docs/asyncapi.yaml by `make emitters` (local/roomcast_local/emitters.py): do not edit.

export const DEFAULT_BUS = "roomcast";

/** Detail-type -> the JSON schema of its detail, as roomcast validates it. */
export const SCHEMAS: Record<DetailType, Record<string, unknown>> = {
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
};

/** Detail-type -> what of the detail must fit a WebSocket frame (x-roomcast-frame). */
export const FRAMES: Partial<Record<DetailType, FrameRule>> = {
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
};

export interface FrameRule {
  maxBytes: number;
  shape: Record<string, unknown>;
}

export type DetailType = "CampaignStarted" | "ContactTagged" | "Disconnect" | "Emit" | "LeadAssigned" | "MessageReceived" | "Notify" | "RevokeTokens";

/** `campaign:started` to the company's room. */
export interface CampaignStartedDetail {
  companyId: string;
  campaignId: string;
  name: string;
}

/** `contact:tagged` to the conversation's room. */
export interface ContactTaggedDetail {
  companyId: string;
  conversationId: string;
  contactId: string;
  tag: string;
}

/** End every connection of the user in the company now (a kick); their sessions are not recovered. */
export interface DisconnectDetail {
  companyId: string;
  userId: string;
  reason?: string | null;
}

/** `event` with `data` to one room of the company. */
export interface EmitDetail {
  companyId: string;
  room: string;
  event: string;
  data?: Record<string, unknown>;
}

/** Becomes a notification for the assignee. */
export interface LeadAssignedDetail {
  companyId: string;
  leadId: string;
  assigneeUserId: string;
  conversationId?: string | null;
}

/** A message from a contact (WhatsApp, email...), stored and broadcast like any message. */
export interface MessageReceivedDetail {
  companyId: string;
  conversationId: string;
  contactId: string;
  content: string;
  externalId?: string | null;
}

/** A stored notification for one user, pushed as `notification:new`. */
export interface NotifyDetail {
  companyId: string;
  userId: string;
  type: string;
  title: string;
  body?: string | null;
  data?: Record<string, unknown> | null;
}

/** As `Disconnect`, and from now on the user's tokens issued before `issuedBefore` (or with no `iat`) */
export interface RevokeTokensDetail {
  companyId: string;
  userId: string;
  issuedBefore: string;
}

/** One call per detail-type but Emit, each resolving to the event id. */
export abstract class TypedCalls {
  /** Validate, check the frame rule, and put one event; its EventBridge id. */
  protected abstract put(detailType: DetailType, detail: Record<string, unknown>): Promise<string>;

  /** `campaign:started` to the company's room. */
  campaignStarted(detail: Omit<CampaignStartedDetail, "companyId">): Promise<string> {
    return this.put("CampaignStarted", { ...detail });
  }

  /** `contact:tagged` to the conversation's room. */
  contactTagged(detail: Omit<ContactTaggedDetail, "companyId">): Promise<string> {
    return this.put("ContactTagged", { ...detail });
  }

  /** End every connection of the user in the company now (a kick); their sessions are not recovered. */
  disconnect(detail: Omit<DisconnectDetail, "companyId">): Promise<string> {
    return this.put("Disconnect", { ...detail });
  }

  /** Becomes a notification for the assignee. */
  leadAssigned(detail: Omit<LeadAssignedDetail, "companyId">): Promise<string> {
    return this.put("LeadAssigned", { ...detail });
  }

  /** A message from a contact (WhatsApp, email...), stored and broadcast like any message. */
  messageReceived(detail: Omit<MessageReceivedDetail, "companyId">): Promise<string> {
    return this.put("MessageReceived", { ...detail });
  }

  /** A stored notification for one user, pushed as `notification:new`. */
  notify(detail: Omit<NotifyDetail, "companyId">): Promise<string> {
    return this.put("Notify", { ...detail });
  }

  /** As `Disconnect`, and from now on the user's tokens issued before `issuedBefore` (or with no `iat`) */
  revokeTokens(detail: Omit<RevokeTokensDetail, "companyId">): Promise<string> {
    return this.put("RevokeTokens", { ...detail });
  }
}
