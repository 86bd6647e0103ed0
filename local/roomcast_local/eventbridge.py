"""EventBridge for the local stack: PutEvents, the template's rules, their patterns, and the functions they target.
Schedules are in roomcast_local.schedules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from roomcast_local.environment import ACCOUNT, REGION, references, resolve
from roomcast_local.errors import aws_error
from roomcast_local.template import resources
from roomcast_local.workers import Lambda

_MISSING = object()


@dataclass(frozen=True)
class Rule:
    name: str
    bus: str
    pattern: dict[str, Any]
    function: str


def rules(template: dict[str, Any]) -> list[Rule]:
    """SAM `EventBridgeRule` events of functions, and `AWS::Events::Rule` resources targeting functions."""
    refs = references(template)
    found = []
    for function, body in resources(template, "AWS::Serverless::Function").items():
        for name, event in body["Properties"].get("Events", {}).items():
            if event["Type"] == "EventBridgeRule":
                properties = event["Properties"]
                bus = resolve(properties.get("EventBusName", "default"), refs) or "default"
                found.append(Rule(f"{function}.{name}", bus, properties["Pattern"], function))
    for name, body in resources(template, "AWS::Events::Rule").items():
        properties = body["Properties"]
        bus = resolve(properties.get("EventBusName", "default"), refs) or "default"
        for target in properties.get("Targets", []):
            arn = target.get("Arn", {})
            if isinstance(arn, dict) and "Fn::GetAtt" in arn:
                found.append(Rule(name, bus, properties["EventPattern"], arn["Fn::GetAtt"][0]))
    return found


def _matches_value(condition: Any, value: Any) -> bool:
    candidates = value if isinstance(value, list) else [value]
    if isinstance(condition, dict):
        if "exists" in condition:
            return (value is not _MISSING) is bool(condition["exists"])
        if "prefix" in condition:
            return any(isinstance(v, str) and v.startswith(condition["prefix"]) for v in candidates)
        if "suffix" in condition:
            return any(isinstance(v, str) and v.endswith(condition["suffix"]) for v in candidates)
        if "anything-but" in condition:
            excluded = condition["anything-but"]
            excluded = excluded if isinstance(excluded, list) else [excluded]
            return value is not _MISSING and all(v not in excluded for v in candidates)
        return False
    return any(v == condition for v in candidates)


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge content filtering: every field of the pattern must match."""
    for key, condition in pattern.items():
        value = event.get(key, _MISSING)
        if isinstance(condition, dict):
            if not isinstance(value, dict) or not matches(condition, value):
                return False
        elif not any(_matches_value(option, value) for option in condition):
            return False
    return True


class EntryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def to_event(entry: dict[str, Any], detail: Any) -> dict[str, Any]:
    """A PutEvents entry as EventBridge delivers it to a target."""
    when = entry.get("Time")
    time = (datetime.fromtimestamp(float(when), UTC) if isinstance(when, int | float) else datetime.now(UTC)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": entry.get("Resources", []),
        "detail": detail,
    }


def check_entry(entry: dict[str, Any]) -> Any:
    """The entry's detail, parsed; EventBridge's own error codes for what it refuses."""
    for field in ("Source", "DetailType", "Detail"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            raise EntryError("InvalidArgument", f"Parameter {field} is not valid.")
    try:
        detail = json.loads(entry["Detail"])
    except ValueError as error:
        raise EntryError("MalformedDetail", "Detail is malformed.") from error
    if not isinstance(detail, dict):
        raise EntryError("MalformedDetail", "Detail is malformed.")
    return detail


class EventBridgeApi:
    """`PutEvents` as a boto3 `events` client sends it (`POST /`, `X-Amz-Target: AWSEvents.PutEvents`); each
    matching rule's target runs in the background, as EventBridge delivers asynchronously."""

    def __init__(self, rules: list[Rule], functions: Lambda, spawn: Callable[[Awaitable[Any]], None]) -> None:
        self.rules = rules
        self.functions = functions
        self.spawn = spawn

    async def put_events(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        json_type = "application/x-amz-json-1.1"
        if target != "AWSEvents.PutEvents":
            return aws_error(400, "UnknownOperationException", f"{target or 'no target'} is not served here", json_type)
        try:
            payload = json.loads(await request.read())
            entries = payload["Entries"]
            if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
                raise ValueError("Entries must hold 1 to 10 entries")
        except (ValueError, KeyError, TypeError) as error:
            return aws_error(400, "ValidationException", str(error), json_type)
        results: list[dict[str, str]] = []
        for entry in entries:
            try:
                detail = check_entry(entry)
            except EntryError as error:
                results.append({"ErrorCode": error.code, "ErrorMessage": error.message})
                continue
            event = to_event(entry, detail)
            results.append({"EventId": event["id"]})
            bus = (entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
            for rule in self.rules:
                if rule.bus == bus and matches(rule.pattern, event):
                    self.spawn(self.functions.invoke(rule.function, event, event["detail-type"], rule.name))
        failed = sum(1 for result in results if "ErrorCode" in result)
        return web.Response(
            body=json.dumps({"FailedEntryCount": failed, "Entries": results}),
            content_type=json_type,
        )
