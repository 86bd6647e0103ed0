"""Emitting to roomcast rooms over EventBridge: validation and the frame rule from the contract, then PutEvents."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

from roomcast_emitter.contract import DEFAULT_BUS, FRAMES, SCHEMAS, TypedCalls

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

DEFAULT_SOURCE = "roomcast.emitter"
DETAIL_FIELD = "$detail"
# PutEvents takes at most 10 entries a call.
ENTRIES_PER_CALL = 10
_VALIDATORS = {name: Draft202012Validator(schema) for name, schema in SCHEMAS.items()}


class EmitterError(Exception):
    """Nothing was sent (or, for PublishFailed, EventBridge refused it)."""


class InvalidEvent(EmitterError, ValueError):
    """The detail is not what roomcast accepts: it would be dropped on arrival."""


class FrameTooLarge(InvalidEvent):
    """What the event pushes would not fit a WebSocket frame."""


class PublishFailed(EmitterError):
    """EventBridge did not take an entry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _encoded_size(value: Any) -> int:
    """Bytes as roomcast writes a frame: compact JSON, UTF-8."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _shaped(shape: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {}
    for name, value in shape.items():
        if isinstance(value, dict) and set(value) == {DETAIL_FIELD}:
            if detail.get(value[DETAIL_FIELD]) is not None:
                shaped[name] = detail[value[DETAIL_FIELD]]
        else:
            shaped[name] = value
    return shaped


def checked(detail_type: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    """The detail without its unset (None) fields, once it is what roomcast accepts; raises otherwise."""
    validator = _VALIDATORS.get(detail_type)
    if validator is None:
        raise InvalidEvent(f"roomcast has no detail-type {detail_type!r}")
    cleaned = {name: value for name, value in detail.items() if value is not None}
    error = best_match(validator.iter_errors(cleaned))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "detail"
        raise InvalidEvent(f"{detail_type}: {where}: {error.message}")
    frame = FRAMES.get(detail_type)
    if frame is not None and _encoded_size(_shaped(frame["shape"], cleaned)) > frame["maxBytes"]:
        raise FrameTooLarge(f"{detail_type}: the event would exceed the {frame['maxBytes']}-byte frame limit")
    return cleaned


class Emitter:
    """Puts events on roomcast's bus. Events belong to a company: `company(id)` gives the emitter that sends them.

    emitter = Emitter(boto3.client("events"), bus="roomcast", source="crm.billing")
    acme = emitter.company("acme")
    acme.to("user:ana").emit("deal:won", {"dealId": "d-7"})
    acme.notify(user_id="ana", type="task", title="Call back")
    """

    def __init__(self, client: EventBridgeClient, *, bus: str = DEFAULT_BUS, source: str = DEFAULT_SOURCE) -> None:
        self._client = client
        self._bus = bus
        self._source = source

    def company(self, company_id: str) -> CompanyEmitter:
        return CompanyEmitter(self, company_id)

    def put(self, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Put checked (detail-type, detail) entries, ten a call; their event ids, in order."""
        ids: list[str] = []
        for start in range(0, len(entries), ENTRIES_PER_CALL):
            batch = entries[start : start + ENTRIES_PER_CALL]
            result = self._client.put_events(
                Entries=[
                    {
                        "Source": self._source,
                        "DetailType": kind,
                        "Detail": json.dumps(detail),
                        "EventBusName": self._bus,
                    }
                    for kind, detail in batch
                ]
            )
            for entry in result["Entries"]:
                if "EventId" not in entry:
                    raise PublishFailed(entry.get("ErrorCode", "Unknown"), entry.get("ErrorMessage", ""))
                ids.append(entry["EventId"])
        return ids


class CompanyEmitter(TypedCalls):
    """The events of one company: `to(room).emit(event, data)`, and one typed call per other detail-type."""

    def __init__(self, emitter: Emitter, company_id: str) -> None:
        self._emitter = emitter
        self.company_id = company_id

    def to(self, *rooms: str) -> BroadcastOperator:
        """The rooms an `emit` reaches: `company:{id}`, `user:{id}`, `conversation:{id}` or `analytics:{id}`."""
        return BroadcastOperator(self, rooms)

    def put(self, detail_type: str, detail: dict[str, Any]) -> str:
        (event_id,) = self.put_many([(detail_type, detail)])
        return event_id

    def put_many(self, entries: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Check every entry first: one that fails sends none of them."""
        checked_entries = [(kind, checked(kind, {**detail, "companyId": self.company_id})) for kind, detail in entries]
        return self._emitter.put(checked_entries)


class BroadcastOperator:
    """Rooms chosen with `to`, as Socket.IO's `io.to(room).to(other)`; `emit` sends the event to each."""

    def __init__(self, company: CompanyEmitter, rooms: Iterable[str]) -> None:
        self._company = company
        self._rooms = tuple(dict.fromkeys(rooms))

    def to(self, *rooms: str) -> BroadcastOperator:
        return BroadcastOperator(self._company, (*self._rooms, *rooms))

    def emit(self, event: str, data: Mapping[str, Any] | None = None) -> list[str]:
        """One `Emit` per room, all checked before any is sent; their event ids, in room order."""
        if not self._rooms:
            raise InvalidEvent("emit needs a room: to(room).emit(event, data)")
        payload = dict(data or {})
        return self._company.put_many(("Emit", {"room": room, "event": event, "data": payload}) for room in self._rooms)
