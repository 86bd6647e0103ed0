"""Sending events to rooms: members are queried page by page and posted to in parallel, each in the encoding
its membership names (encoded once per codec present). A recipient found gone is handed to the deferred
function, never cleaned up inside the request that found it."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.delivery.deferred import Deferrer, GoneRecipient, gone_tasks
from shared.delivery.management_api import Delivery, Gateway
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import utc_now
from shared.protocol.codec import Codec, encodings
from shared.protocol.errors import ErrorCode, RoomcastError
from shared.protocol.frames import Frame, encode
from shared.protocol.rooms import Room
from shared.stores.connections import ConnectionStore


@dataclass
class FanoutReport:
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    gone: list[GoneRecipient] = field(default_factory=list)


class Hub:
    def __init__(self, store: ConnectionStore, gateway: Gateway, deferrer: Deferrer, max_outbound_bytes: int) -> None:
        self._store = store
        self._gateway = gateway
        self._deferrer = deferrer
        self._max_outbound_bytes = max_outbound_bytes

    def encode(self, frame: Frame) -> bytes:
        """The native encoding; a Socket.IO one is at most two bytes longer (decision 0035), within the same check."""
        data = encode(frame).encode("utf-8")
        if len(data) > self._max_outbound_bytes:
            raise RoomcastError(ErrorCode.PAYLOAD_TOO_LARGE, f"event exceeds {self._max_outbound_bytes} bytes")
        return data

    def emit(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> FanoutReport:
        """Send `frame` to every connection in the room; connections found gone are handed off."""
        self.encode(frame)
        report = self._post_to_room(company_id, room, frame, exclude)
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

    def _post_to_room(self, company_id: str, room: Room, frame: Frame, exclude: str | None) -> FanoutReport:
        by_codec: dict[Codec, list[str]] = {}
        for page in self._store.members(company_id, room):
            for member in page:
                if member.connection_id != exclude:
                    by_codec.setdefault(member.codec, []).append(member.connection_id)
        report = FanoutReport(recipients=sum(len(group) for group in by_codec.values()))
        room_key = room.key(company_id)
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
            logger.warning("some recipients failed", extra={"room": room.name, "failed": report.failed})
        return report
