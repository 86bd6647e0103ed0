"""Sending events to rooms: a room's members are read (a Query page at a time, every page before the first
post), then posted to in parallel, each in the encoding its membership names (encoded once per codec present).
A recipient found gone is handed to the deferred function, never cleaned up inside the request that found it.
A room past the large-room threshold is handed off whole after its first page, and posted to by chunk workers
within the company's and the platform's posts-per-second budgets (decisions 0052, 0092)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.delivery.deferred import BroadcastChunk, Deferrer, GoneRecipient, Recipient, RoomBroadcast, gone_tasks
from shared.delivery.management_api import Delivery, Gateway
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import Clock, utc_now
from shared.protocol.codec import Codec, encode_event, encodings
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Frame, encode
from shared.protocol.recovery import offset_text, recoverable
from shared.protocol.rooms import Room, parse_room
from shared.stores.budget import TenantBudgets
from shared.stores.connections import ConnectionStore, Member
from shared.stores.journal import Journal


@dataclass(frozen=True)
class Recipients:
    """A room's members as one read found them, grouped by the codec each speaks."""

    company_id: str
    room: Room
    by_codec: dict[Codec, list[str]]
    exclude: str | None = None
    large: bool = False
    """Past the large-room threshold: `by_codec` holds the first page only, and the room is handed off whole."""
    sessions: tuple[Member, ...] = ()
    """Members that are sessions (decision 0065): each hears an event from its `since` position on, with its
    offset. Not in `by_codec`."""

    def plain(self) -> Recipients:
        """Only the members that are not sessions: those an event reaches without its journal position."""
        return Recipients(self.company_id, self.room, self.by_codec, self.exclude, self.large)

    def only_sessions(self) -> Recipients:
        return Recipients(self.company_id, self.room, {}, self.exclude, False, self.sessions)


@dataclass(frozen=True)
class LargeRooms:
    threshold: int
    """Recipients past which a room is handed off rather than posted to inside the request."""
    chunk: int
    """Recipients per chunk worker: one asynchronous invocation each."""
    batch: int
    """Posts a chunk worker claims from the budget and sends at once: its own concurrency."""
    budget: TenantBudgets
    clock: Clock


@dataclass
class FanoutReport:
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    gone: list[GoneRecipient] = field(default_factory=list)
    handed_off: bool = False
    """The room was past the large-room threshold: chunk workers post to it after the reply."""
    requeued: int = 0
    """Recipients of a chunk sent back to the queue: a budget was spent (decision 0092)."""


class Hub:
    def __init__(
        self,
        store: ConnectionStore,
        gateway: Gateway,
        deferrer: Deferrer,
        max_outbound_bytes: int,
        large_rooms: LargeRooms | None = None,
        *,
        journal: Journal | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Without `large_rooms`, every room is posted to inside the request, whatever its size. Without
        `journal`, nothing is recorded for sessions to replay."""
        self._store = store
        self._gateway = gateway
        self._deferrer = deferrer
        self._max_outbound_bytes = max_outbound_bytes
        self._large_rooms = large_rooms
        self._journal = journal
        self._now = clock.now if clock is not None else utc_now

    def record(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> int | None:
        """Put a recoverable event in the company's journal (one write, whatever the room's size) and return
        its position; None for a volatile event, or without a journal. Called before the room's members are
        read, so that a session that joins meanwhile either is read or replays it (decision 0065)."""
        if self._journal is None or not recoverable(frame):
            return None
        self.encode(frame)  # an event too large to send is not recorded either
        return self._journal.append(company_id, room.name, frame, exclude, self._now())

    def encode(self, frame: Frame) -> bytes:
        """The native encoding; a Socket.IO one is at most two bytes longer (decision 0035), within the same check."""
        data = encode(frame).encode("utf-8")
        if len(data) > self._max_outbound_bytes:
            raise RoomcastError(ErrorCode.PAYLOAD_TOO_LARGE, f"event exceeds {self._max_outbound_bytes} bytes")
        return data

    def emit(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> FanoutReport:
        """Send `frame` to every connection in the room; connections found gone are handed off. A recoverable
        event is recorded first, then the members are read."""
        position = self.record(company_id, room, frame, exclude)
        return self.deliver(self.recipients(company_id, room, exclude), frame, position)

    def recipients(self, company_id: str, room: Room, exclude: str | None = None, whole: bool = False) -> Recipients:
        """Who is in the room now: a caller may read this alongside its other reads, before its write. Past the
        large-room threshold, one page says so and the rest is left to the workers, unless `whole` is asked."""
        threshold = None if self._large_rooms is None or whole else self._large_rooms.threshold
        # One page decides a large room: the excluded member and one past the threshold.
        page_size = None if threshold is None else threshold + 2
        by_codec: dict[Codec, list[str]] = {}
        sessions: list[Member] = []
        found = 0
        for page in self._store.members(company_id, room, page_size):
            for member in page:
                if member.connection_id != exclude:
                    if member.since is None:
                        by_codec.setdefault(member.codec, []).append(member.connection_id)
                    else:
                        sessions.append(member)
                    found += 1
            if threshold is not None and found > threshold:
                return Recipients(company_id, room, by_codec, exclude, True, tuple(sessions))
        return Recipients(company_id, room, by_codec, exclude, False, tuple(sessions))

    def deliver(self, recipients: Recipients, frame: Frame, position: int | None = None) -> FanoutReport:
        """Post `frame` to the recipients read before; those found gone are handed off. A large room is handed
        off whole: the reply does not wait for it. `position`: the event's journal position (`record`), which
        sessions hear as its offset; a session member whose `since` is later replays it instead."""
        self.encode(frame)
        if recipients.large:
            broadcast = RoomBroadcast(
                companyId=recipients.company_id,
                room=recipients.room.name,
                frame=frame,
                exclude=recipients.exclude,
                position=position,
            )
            self._deferrer.defer(broadcast)
            metrics.add_metric(name="LargeRoomsHandedOff", unit=MetricUnit.Count, value=1)
            return FanoutReport(handed_off=True)
        report = self._post(recipients, frame, position)
        self._hand_off(report.gone)
        return report

    def split_room(self, task: RoomBroadcast) -> int:
        """The worker's side of a hand-off: every member of the room, in chunks of one worker each. Returns how
        many chunks were handed on; one that could not be is logged, and its members miss this event."""
        room = parse_room(task.room)
        if room is None or self._large_rooms is None:
            raise ValueError(f"no large-room broadcast to {task.room!r}")
        members = [
            Recipient(connectionId=member.connection_id, codec=member.codec, since=member.since)
            for page in self._store.members(task.company_id, room)
            for member in page
            if member.connection_id != task.exclude
        ]
        size = self._large_rooms.chunk
        handed = 0
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            task_of_chunk = BroadcastChunk(
                companyId=task.company_id,
                room=task.room,
                frame=task.frame,
                recipients=tuple(chunk),
                position=task.position,
            )
            try:
                self._deferrer.defer(task_of_chunk)
                handed += 1
            except Exception:
                # Not retried by failing the whole split: the chunks already handed on would be posted twice.
                logger.exception("could not hand off a chunk", extra={"room": task.room, "members": len(chunk)})
                metrics.add_metric(name="HandOffFailures", unit=MetricUnit.Count, value=1)
        return handed

    def post_chunk(self, chunk: BroadcastChunk) -> FanoutReport:
        """Post to one chunk's members, a batch at a time, each batch claimed from the company's and the platform's
        budgets first; once either is spent, the members left go back to the queue as a chunk of their own."""
        room = parse_room(chunk.room)
        if room is None or self._large_rooms is None:
            raise ValueError(f"no large-room broadcast to {chunk.room!r}")
        rooms = self._large_rooms
        remaining = list(chunk.recipients)
        report = FanoutReport(recipients=len(remaining))
        while remaining:
            granted = rooms.budget.take(chunk.company_id, min(rooms.batch, len(remaining)), rooms.clock.now())
            if granted == 0:
                break
            batch, remaining = remaining[:granted], remaining[granted:]
            by_codec: dict[Codec, list[str]] = {}
            sessions: list[Member] = []
            for recipient in batch:
                if recipient.since is None:
                    by_codec.setdefault(recipient.codec, []).append(recipient.connection_id)
                else:
                    sessions.append(Member(recipient.connection_id, recipient.codec, recipient.since))
            part = self._post(
                Recipients(chunk.company_id, room, by_codec, sessions=tuple(sessions)), chunk.frame, chunk.position
            )
            report.delivered += part.delivered
            report.failed += part.failed
            report.gone.extend(part.gone)
        self._hand_off(report.gone)
        if remaining:
            # A budget is spent: the rest waits in the queue, not in this execution (decision 0092). Should this
            # fail, the chunk fails and comes back whole: some members hear the event twice, none misses it.
            self._deferrer.defer(
                chunk.model_copy(update={"recipients": tuple(remaining), "requeues": chunk.requeues + 1})
            )
            report.requeued = len(remaining)
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

    def _post(self, recipients: Recipients, frame: Frame, position: int | None = None) -> FanoutReport:
        by_codec = recipients.by_codec
        room_key = recipients.room.key(recipients.company_id)
        groups: list[tuple[list[str], bytes]] = [
            (by_codec[codec], data) for codec, data in encodings(frame, by_codec).items()
        ]
        hearing = [
            member
            for member in recipients.sessions
            if position is None or (member.since is not None and member.since <= position)
        ]
        if hearing:
            offset = None if position is None else offset_text(position)
            by_session_codec: dict[Codec, list[str]] = {}
            for member in hearing:
                by_session_codec.setdefault(member.codec, []).append(member.connection_id)
            groups += [(group, encode_event(frame, codec, offset)) for codec, group in by_session_codec.items()]
        report = FanoutReport(recipients=sum(len(group) for group, _ in groups))
        for group, data in groups:
            deliveries = self._gateway.post_many(group, data)
            answered = utc_now()
            for connection_id, delivery in zip(group, deliveries, strict=True):
                if delivery is Delivery.DELIVERED:
                    report.delivered += 1
                elif delivery is Delivery.GONE:
                    report.gone.append(GoneRecipient(connectionId=connection_id, roomKey=room_key, foundAt=answered))
                else:
                    report.failed += 1
        metrics.add_metric(name="FanoutRecipients", unit=MetricUnit.Count, value=report.recipients)
        if report.failed:
            metrics.add_metric(name="FanoutFailures", unit=MetricUnit.Count, value=report.failed)
            logger.warning("some recipients failed", extra={"room": recipients.room.name, "failed": report.failed})
        return report
