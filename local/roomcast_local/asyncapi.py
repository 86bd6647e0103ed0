"""docs/asyncapi.yaml, generated: `python -m roomcast_local.asyncapi > docs/asyncapi.yaml` (`make asyncapi`).

Actions come from the namespaces the handlers register (name and input model); replies and events from
`shared.protocol.outbound`. tests/test_asyncapi.py checks the committed file is this output and valid."""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from shared.protocol.errors import ErrorCode
from shared.protocol.frames import ACK_ID_MAX
from shared.protocol.namespaces import NAMESPACE_OF_ROOM, NAMESPACES
from shared.protocol.outbound import EVENTS, REPLIES, RESERVED_EVENT_NAMES, ErrorDetail, ServerData
from shared.protocol.publishing import DEFAULT_BUS, DETAIL_TYPES, EVENT_NAME_PATTERN
from shared.protocol.recovery import SESSION_EVENT, recoverable
from shared.routes.table import namespaces as served
from shared.wiring.namespace import Namespace

SCHEMAS = "#/components/schemas/"
CHANNEL = "#/channels/roomcast"
BACKEND = "#/channels/backend"
ALL_NAMESPACES = ", ".join(["/", *NAMESPACES])


def _key(name: str) -> str:
    """Component keys allow letters, digits, `.`, `-` and `_`: `message:send` becomes `message.send`."""
    return name.replace(":", ".")


def namespaces() -> list[Namespace]:
    return list(served().values())


class _Schemas:
    """Model schemas gathered under components/schemas, each under its model's name."""

    def __init__(self) -> None:
        self.found: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode = "serialization") -> dict[str, str]:
        """What the server sends (serialization) or accepts (validation) as `model`, named after it."""
        schema = TypeAdapter(model).json_schema(by_alias=True, ref_template=SCHEMAS + "{model}", mode=mode)
        for name, found in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
            # Two models of one name would make one component stand for both.
            assert self.found.setdefault(name, found) == found, f"two schemas named {name}"
        return {"$ref": SCHEMAS + model.__name__}


def _envelope(event: str, data: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"event": {"const": event}, "data": data}
    if namespace:
        properties["namespace"] = {"const": namespace}
    return {"type": "object", "required": ["event", "data"], "properties": properties}


OFFSET = {
    "type": "string",
    "pattern": "^[0-9]{1,15}$",
    "description": "Sessions only (recovery=1): the event's place in what the session was sent, opaque; send the "
    "last one back to recover (Socket.IO: the event's last argument, kept by socket.io-client)",
}


def _recoverable(envelope: dict[str, Any]) -> dict[str, Any]:
    envelope["properties"]["offset"] = OFFSET
    return envelope


def _ack(ack_id: dict[str, Any], ok: bool, field: str, schema: dict[str, Any]) -> dict[str, Any]:
    """One of an ack's two shapes: `ok` true with `data`, or false with `error`."""
    return {
        "type": "object",
        "required": ["event", "ackId", "ok", field],
        "properties": {"event": {"const": "ack"}, "ackId": ack_id, "ok": {"const": ok}, field: schema},
    }


def document() -> dict[str, Any]:
    schemas = _Schemas()
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    error = schemas.ref(ErrorDetail)
    ack_id = {"type": "string", "minLength": 1, "maxLength": ACK_ID_MAX}
    messages["error"] = {
        "name": "error",
        "summary": "An action sent without ackId failed",
        "payload": _envelope("error", error, None),
    }
    for namespace in namespaces():
        for action, route in sorted(namespace.routes.items()):
            reply = REPLIES[action]
            key = _key(action)
            messages[key] = {
                "name": action,
                "summary": f"Action `{action}` (namespace {namespace.name or '/'})",
                "payload": {
                    "type": "object",
                    "required": ["action"],
                    "additionalProperties": False,
                    "properties": {"action": {"const": action}, "data": schemas.ref(route.model), "ackId": ack_id},
                },
            }
            data = schemas.ref(reply.data)
            messages[f"{key}.ack"] = {
                "name": f"{action} ack",
                "summary": f"The answer to `{action}` sent with an ackId",
                "payload": {"oneOf": [_ack(ack_id, True, "data", data), _ack(ack_id, False, "error", error)]},
            }
            answers = [f"{key}.ack", "error"]
            if reply.event is not None:
                messages[f"{key}.reply"] = {
                    "name": reply.event,
                    "summary": f"The answer to `{action}` sent without an ackId",
                    "payload": _envelope(reply.event, data, namespace.name),
                }
                answers.append(f"{key}.reply")
            operations[f"send.{key}"] = {
                "action": "send",
                "channel": {"$ref": CHANNEL},
                "summary": f"Perform `{action}`",
                "messages": [{"$ref": f"{CHANNEL}/messages/{key}"}],
                "reply": {
                    "channel": {"$ref": CHANNEL},
                    "messages": [{"$ref": f"{CHANNEL}/messages/{answer}"} for answer in answers],
                },
            }
    for name, event in sorted(EVENTS.items()):
        key = _key(name)
        messages[f"{key}.event"] = {
            "name": name,
            "summary": event.summary,
            "payload": _envelope(name, schemas.ref(event.data), event.namespace),
        }
        if recoverable({"event": name}) or name == SESSION_EVENT:
            _recoverable(messages[f"{key}.event"]["payload"])
        operations[f"receive.{key}"] = {
            "action": "receive",
            "channel": {"$ref": CHANNEL},
            "summary": event.summary,
            "messages": [{"$ref": f"{CHANNEL}/messages/{key}.event"}],
        }
    # A backend service's `Emit` names its own event: any `noun:verb` but the ones above, in its room's namespace.
    backend = _envelope("", schemas.ref(ServerData), None)
    reserved = {"not": {"enum": RESERVED_EVENT_NAMES}}
    backend["properties"]["event"] = {"type": "string", "pattern": EVENT_NAME_PATTERN, **reserved}
    backend["properties"]["namespace"] = {"enum": sorted(set(NAMESPACE_OF_ROOM.values()))}
    messages["emitted.event"] = {
        "name": "emitted",
        "summary": "An event a backend service sent with `Emit`: its name and data are the service's",
        "payload": _recoverable(backend),
    }
    operations["receive.emitted"] = {
        "action": "receive",
        "channel": {"$ref": CHANNEL},
        "summary": "An event a backend service sent with `Emit`",
        "messages": [{"$ref": f"{CHANNEL}/messages/emitted.event"}],
    }
    backend_messages: dict[str, Any] = {}
    for detail_type, model in sorted(DETAIL_TYPES.items()):
        backend_messages[detail_type] = {
            "name": detail_type,
            "summary": (model.__doc__ or f"A `{detail_type}` event").strip().splitlines()[0],
            "payload": schemas.ref(model, mode="validation"),
            **({"x-roomcast-frame": model.frame_fit.document()} if model.frame_fit is not None else {}),
        }
        operations[f"receive.backend.{detail_type}"] = {
            "action": "receive",
            "channel": {"$ref": BACKEND},
            "summary": f"A backend service puts a `{detail_type}` event on the bus",
            "messages": [{"$ref": f"{BACKEND}/messages/{detail_type}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "roomcast",
            "version": "0.1.0",
            "description": (
                "Real-time rooms for a multi-tenant CRM: JSON frames on one WebSocket (docs/protocol.md). "
                "The same actions and events flow over Socket.IO, as events of the namespaces "
                f"{ALL_NAMESPACES} (docs/socketio.md). Error codes: {', '.join(code.value for code in ErrorCode)}. "
                "Generated from the code by `make asyncapi`; do not edit by hand."
            ),
        },
        "servers": {
            "aws": {
                "host": "{apiId}.execute-api.{region}.amazonaws.com",
                "pathname": "/{stage}",
                "protocol": "wss",
                "description": "The deployed stage: the WebSocketUrl output of the stack",
                "variables": {
                    "apiId": {"description": "The WebSocket API's id"},
                    "region": {"default": "us-east-1"},
                    "stage": {"default": "prod"},
                },
            },
            "local": {"host": "127.0.0.1:3001", "protocol": "ws", "description": "`make run`"},
        },
        "channels": {
            "roomcast": {
                "address": "/",
                "description": "One connection per client, authenticated at the handshake with ?token=<JWT>",
                "messages": messages,
                "bindings": {
                    "ws": {
                        "query": {
                            "type": "object",
                            "required": ["token"],
                            "properties": {
                                "token": {"type": "string", "description": "HS256 JWT"},
                                "recovery": {"const": "1", "description": "Sessions that outlive the connection"},
                                "session": {
                                    "type": "string",
                                    "description": "Native, recovering: the `session` event's sessionId",
                                },
                                "offset": {"type": "string", "description": "Native, recovering: the last offset"},
                            },
                        }
                    }
                },
            },
            "backend": {
                "address": DEFAULT_BUS,
                "title": "The EventBridge bus backend services publish on",
                "description": (
                    "PutEvents on the stack's bus (its name the EventBusName parameter): the entry's DetailType is "
                    "the message's name and its Detail the payload, any Source. Emitters for Python and TypeScript "
                    "are generated from these messages (docs/publishing.md). `x-roomcast-frame`: what of the "
                    'detail must fit a frame, `{"$detail": field}` standing for the detail\'s field, measured as '
                    "compact UTF-8 JSON."
                ),
                "messages": backend_messages,
            },
        },
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.found.items()))},
    }


class _Dumper(yaml.SafeDumper):
    """Writes a schema used twice out twice: anchors and aliases would make the document harder to read."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002 - PyYAML's signature
        return True


def render() -> str:
    return yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
