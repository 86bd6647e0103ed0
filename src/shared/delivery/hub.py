"""Sending events: to a room's members (read a Query page at a time, every page before the first post, by
`shared.stores.rooms`), posted to in parallel, each in the encoding its membership names (encoded once per
codec present); and to one connection. A room past the large-room threshold is handed off whole after its
first page, to the chunk workers of `shared.delivery.large_rooms` (decision 0052).

One rule for a 410 (decision 0085): it is handed to the deferred function for clean-up, never cleaned up
inside the request that met it, as a `GoneRecipient` that names the membership it was found through (for a
post to a room) and when it came. The clean-up judges it: a 410 from a connection whose $connect was still
running proves nothing. Only `send_once_connected`, the first post to a connection whose $connect may still be
running, retries a 410 instead, and hands off nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from shared.delivery.deferred import Deferrer, GoneRecipient, RoomBroadcast, gone_tasks
from shared.delivery.management_api import Delivery, Gateway
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import Clock
from shared.protocol.codec import Codec, encode_event, encodings
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Frame, encode
from shared.protocol.recovery import offset_text, recoverable
from shared.protocol.rooms import Room
from shared.stores.journal import Journal
from shared.stores.rooms import Recipients, RoomReader

# API Gateway answers 410 until $connect returns, which may take up to the integration's 29 s; a first post
# is worth retrying for as long as the client waits for it (socket.io-client's `timeout`, 20 s).
FIRST_POST_WAIT_SECONDS = 20.0
_FIRST_RETRY_SECONDS = 0.005
_LONGEST_RETRY_SECONDS = 0.1
# A client that left at once must not hold the deferred function for the whole wait.
_CLOSED_CHECK_EVERY = 10


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


@dataclass(frozen=True)
class FirstPost:
    delivery: Delivery
    attempts: int


class Hub:
    def __init__(
        self,
        rooms: RoomReader,
        gateway: Gateway,
        deferrer: Deferrer,
        max_outbound_bytes: int,
        clock: Clock,
        *,
        journal: Journal | None = None,
    ) -> None:
        """Without `journal`, nothing is recorded for sessions to replay."""
        self._rooms = rooms
        self._gateway = gateway
        self._deferrer = deferrer
        self._max_outbound_bytes = max_outbound_bytes
        self._clock = clock
        self._journal = journal

    def record(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> int | None:
        """Put a recoverable event in the company's journal (one write, whatever the room's size) and return
        its position; None for a volatile event, or without a journal. Called before the room's members are
        read, so that a session that joins meanwhile either is read or replays it (decision 0065)."""
        if self._journal is None or not recoverable(frame):
            return None
        self._check_size(frame)  # an event too large to send is not recorded either
        return self._journal.append(company_id, room.name, frame, exclude, self._clock.now())

    def emit(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> FanoutReport:
        """Send `frame` to every connection in the room but `exclude`. A recoverable event is recorded first,
        then the members are read."""
        position = self.record(company_id, room, frame, exclude)
        return self.deliver(self._rooms.recipients(company_id, room, exclude), frame, position)

    def deliver(self, recipients: Recipients, frame: Frame, position: int | None = None) -> FanoutReport:
        """Post `frame` to the recipients read before. A large room is handed off whole: the reply does not
        wait for it. `position`: the event's journal position (`record`), which sessions hear as its offset;
        a session member whose `since` is later replays it instead."""
        self._check_size(frame)
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
        return self.deliver_each([recipients], frame, position)

    def deliver_each(self, batches: Iterable[Recipients], frame: Frame, position: int | None = None) -> FanoutReport:
        """Post `frame` to each batch of recipients as it comes (a chunk worker's come as its budget allows);
        those found gone are handed off once all are posted."""
        report = FanoutReport()
        for recipients in batches:
            self._post_room(recipients, frame, position, report)
        self._hand_off(report.gone)
        return report

    def send(self, connection_id: str, text: str) -> Delivery:
        """One message to one connection, already encoded in its own codec."""
        return self.send_all([connection_id], text)[0]

    def send_all(self, connection_ids: Sequence[str], text: str) -> list[Delivery]:
        """The same message to each connection (the heartbeat's ping)."""
        gone: list[GoneRecipient] = []
        deliveries = self._post(connection_ids, text.encode("utf-8"), gone)
        self._hand_off(gone)
        return deliveries

    def send_once_connected(self, connection_id: str, text: str, closed: Callable[[], bool]) -> FirstPost:
        """The first post to a connection whose $connect may still be running (a Socket.IO open packet, a
        native session's replay): API Gateway answers 410 until $connect returns, so a 410 is retried (backing
        off from 5 ms to 100 ms) for as long as a client waits, or until `closed` says it means what it says
        (checked about once a second, once retries are slow). Nothing is handed off: a connection that never
        answers is forgotten by its $disconnect, or the sweep."""
        data = text.encode("utf-8")
        deadline = self._clock.now() + timedelta(seconds=FIRST_POST_WAIT_SECONDS)
        pause = _FIRST_RETRY_SECONDS
        attempts = 0
        while True:
            attempts += 1
            (delivery,) = self._gateway.post_many([connection_id], data)
            if delivery is not Delivery.GONE or self._clock.now() + timedelta(seconds=pause) > deadline:
                return FirstPost(delivery, attempts)
            if pause == _LONGEST_RETRY_SECONDS and attempts % _CLOSED_CHECK_EVERY == 0 and closed():
                return FirstPost(delivery, attempts)
            self._clock.sleep(pause)
            pause = min(pause * 2, _LONGEST_RETRY_SECONDS)

    def close(self, connection_id: str) -> None:
        """Close a connection from the server side; its $disconnect cleans up."""
        self._gateway.close(connection_id)

    def _check_size(self, frame: Frame) -> None:
        """The native encoding's size; a Socket.IO one is at most two bytes longer (decision 0035), within the
        same check."""
        if len(encode(frame).encode("utf-8")) > self._max_outbound_bytes:
            raise RoomcastError(ErrorCode.PAYLOAD_TOO_LARGE, f"event exceeds {self._max_outbound_bytes} bytes")

    def _post(
        self, connection_ids: Sequence[str], data: bytes, gone: list[GoneRecipient], room_key: str | None = None
    ) -> list[Delivery]:
        """Every post the Hub makes but a first one: each connection that answered 410 joins `gone`, with the
        membership it was found through (`room_key`) and when the answer came."""
        deliveries = self._gateway.post_many(connection_ids, data)
        answered = self._clock.now()
        gone += [
            GoneRecipient(connectionId=connection_id, roomKey=room_key, foundAt=answered)
            for connection_id, delivery in zip(connection_ids, deliveries, strict=True)
            if delivery is Delivery.GONE
        ]
        return deliveries

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

    def _post_room(self, recipients: Recipients, frame: Frame, position: int | None, report: FanoutReport) -> None:
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
        posted = sum(len(group) for group, _ in groups)
        failed = 0
        for group, data in groups:
            deliveries = self._post(group, data, report.gone, room_key)
            report.delivered += deliveries.count(Delivery.DELIVERED)
            failed += deliveries.count(Delivery.FAILED)
        report.recipients += posted
        report.failed += failed
        metrics.add_metric(name="FanoutRecipients", unit=MetricUnit.Count, value=posted)
        if failed:
            metrics.add_metric(name="FanoutFailures", unit=MetricUnit.Count, value=failed)
            logger.warning("some recipients failed", extra={"room": recipients.room.name, "failed": failed})
