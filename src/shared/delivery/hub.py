"""Sending events to rooms: members are queried page by page and posted to in parallel, each in the encoding
its membership names (encoded once per codec present). A recipient found gone is handed to the deferred
function, never cleaned up inside the request that found it. A room past the large-room threshold is handed
off whole and posted to by chunk workers within a shared posts-per-second budget (decision 0052)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.delivery.deferred import (
    BroadcastChunk,
    Deferrer,
    GoneRecipient,
    Recipient,
    RoomBroadcast,
    gone_tasks,
)
from shared.delivery.management_api import Delivery, Gateway
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import Clock, utc_now
from shared.protocol.codec import Codec, encodings
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Frame, encode
from shared.protocol.rooms import Room, parse_room
from shared.stores.budget import PostBudget
from shared.stores.connections import ConnectionStore, Member


@dataclass
class FanoutReport:
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    gone: list[GoneRecipient] = field(default_factory=list)
    handed_off: bool = False
    """The room was past the large-room threshold: chunk workers post to it after the reply."""


@dataclass(frozen=True)
class LargeRooms:
    threshold: int
    """Recipients past which a room is handed off rather than posted to inside the request."""
    chunk: int
    """Recipients per chunk worker: one asynchronous invocation each."""
    batch: int
    """Posts a chunk worker claims from the budget and sends at once: its own concurrency."""
    budget: PostBudget
    clock: Clock


class Hub:
    def __init__(
        self,
        store: ConnectionStore,
        gateway: Gateway,
        deferrer: Deferrer,
        max_outbound_bytes: int,
        large_rooms: LargeRooms | None = None,
    ) -> None:
        """Without `large_rooms`, every room is posted to inside the request, whatever its size."""
        self._store = store
        self._gateway = gateway
        self._deferrer = deferrer
        self._max_outbound_bytes = max_outbound_bytes
        self._large_rooms = large_rooms

    def encode(self, frame: Frame) -> bytes:
        """The native encoding; a Socket.IO one is at most two bytes longer (decision 0035), within the same check."""
        data = encode(frame).encode("utf-8")
        if len(data) > self._max_outbound_bytes:
            raise RoomcastError(ErrorCode.PAYLOAD_TOO_LARGE, f"event exceeds {self._max_outbound_bytes} bytes")
        return data

    def emit(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> FanoutReport:
        """Send `frame` to every connection in the room; connections found gone are handed off. A room past the
        large-room threshold is handed off whole, after one page of its members: the reply does not wait for it."""
        self.encode(frame)
        members = self._members_up_to_threshold(company_id, room, exclude)
        if members is None:
            self._deferrer.defer(RoomBroadcast(companyId=company_id, room=room.name, frame=frame, exclude=exclude))
            metrics.add_metric(name="LargeRoomsHandedOff", unit=MetricUnit.Count, value=1)
            return FanoutReport(handed_off=True)
        report = self._post_to_members(room.key(company_id), frame, members)
        self._hand_off(report.gone)
        return report

    def split_room(self, task: RoomBroadcast) -> int:
        """The worker's side of a hand-off: every member of the room, in chunks of one worker each. Returns how
        many chunks were handed on; one that could not be is logged, and its members miss this event."""
        room = parse_room(task.room)
        if room is None or self._large_rooms is None:
            raise ValueError(f"no large-room broadcast to {task.room!r}")
        members = [
            Recipient(connectionId=member.connection_id, codec=member.codec)
            for page in self._store.members(task.company_id, room)
            for member in page
            if member.connection_id != task.exclude
        ]
        size = self._large_rooms.chunk
        chunks = [members[start : start + size] for start in range(0, len(members), size)]
        room_key = room.key(task.company_id)
        handed = 0
        for recipients in chunks:
            chunk = BroadcastChunk(
                companyId=task.company_id, roomKey=room_key, frame=task.frame, recipients=tuple(recipients)
            )
            try:
                self._deferrer.defer(chunk)
                handed += 1
            except Exception:
                # Not retried by failing the whole split: the chunks already handed on would be posted twice.
                logger.exception("could not hand off a chunk", extra={"room": task.room, "members": len(recipients)})
                metrics.add_metric(name="HandOffFailures", unit=MetricUnit.Count, value=1)
        return handed

    def post_chunk(self, chunk: BroadcastChunk) -> FanoutReport:
        """Post to one chunk's members, a batch at a time, each batch claimed from the shared budget first."""
        if self._large_rooms is None:
            raise ValueError("no large-room settings to post a chunk with")
        rooms = self._large_rooms
        remaining = [Member(recipient.connection_id, recipient.codec) for recipient in chunk.recipients]
        report = FanoutReport(recipients=len(remaining))
        while remaining:
            granted = rooms.budget.take(min(rooms.batch, len(remaining)), rooms.clock.now())
            if granted == 0:
                now = rooms.clock.now()
                rooms.clock.sleep(1 - now.microsecond / 1_000_000)  # until the next second's budget
                continue
            batch, remaining = remaining[:granted], remaining[granted:]
            part = self._post_to_members(chunk.room_key, chunk.frame, batch)
            report.delivered += part.delivered
            report.failed += part.failed
            report.gone.extend(part.gone)
        self._hand_off(report.gone)
        return report

    def send(self, connection_id: str, text: str) -> Delivery:
        """One message, already encoded in the connection's own codec."""
        return self.post([connection_id], text.encode("utf-8"))[0]

    def offer(self, connection_id: str, data: bytes) -> Delivery:
        """Post once; a 410 is the caller's to judge (a connection whose $connect is running answers 410 too)."""
        (delivery,) = self._gateway.post_many([connection_id], data)
        return delivery

    def post(self, connection_ids: list[str], data: bytes) -> list[Delivery]:
        """The same bytes to each connection; those found gone are handed off."""
        deliveries = self._gateway.post_many(connection_ids, data)
        answered = utc_now()
        self._hand_off(
            [
                GoneRecipient(connectionId=connection_id, foundAt=answered)
                for connection_id, delivery in zip(connection_ids, deliveries, strict=True)
                if delivery is Delivery.GONE
            ]
        )
        return deliveries

    def close(self, connection_id: str) -> None:
        """Close a connection from the server side; its $disconnect cleans up."""
        self._gateway.close(connection_id)

    def _hand_off(self, gone: list[GoneRecipient]) -> None:
        if not gone:
            return
        metrics.add_metric(name="GoneConnections", unit=MetricUnit.Count, value=len(gone))
        for task in gone_tasks(gone):
            try:
                self._deferrer.defer(task)
            except Exception:
                # What was sent stays sent: a later 410, the sweep or the TTL forgets these connections.
                logger.exception("could not hand off gone connections", extra={"gone": len(task.recipients)})
                metrics.add_metric(name="HandOffFailures", unit=MetricUnit.Count, value=1)

    def _members_up_to_threshold(self, company_id: str, room: Room, exclude: str | None) -> list[Member] | None:
        """The room's members but `exclude`, or None as soon as they are more than the large-room threshold."""
        threshold = None if self._large_rooms is None else self._large_rooms.threshold
        found: list[Member] = []
        # One page decides a large room: the excluded member and one past the threshold.
        page_size = None if threshold is None else threshold + 2
        for page in self._store.members(company_id, room, page_size):
            found.extend(member for member in page if member.connection_id != exclude)
            if threshold is not None and len(found) > threshold:
                return None
        return found

    def _post_to_members(self, room_key: str, frame: Frame, members: Sequence[Member]) -> FanoutReport:
        by_codec: dict[Codec, list[str]] = {}
        for member in members:
            by_codec.setdefault(member.codec, []).append(member.connection_id)
        report = FanoutReport(recipients=len(members))
        for codec, data in encodings(frame, by_codec).items():
            recipients = by_codec[codec]
            deliveries = self._gateway.post_many(recipients, data)
            answered = utc_now()
            for connection_id, delivery in zip(recipients, deliveries, strict=True):
                if delivery is Delivery.DELIVERED:
                    report.delivered += 1
                elif delivery is Delivery.GONE:
                    report.gone.append(GoneRecipient(connectionId=connection_id, roomKey=room_key, foundAt=answered))
                else:
                    report.failed += 1
        metrics.add_metric(name="FanoutRecipients", unit=MetricUnit.Count, value=report.recipients)
        if report.failed:
            metrics.add_metric(name="FanoutFailures", unit=MetricUnit.Count, value=report.failed)
            logger.warning("some recipients failed", extra={"room": room_key, "failed": report.failed})
        return report
