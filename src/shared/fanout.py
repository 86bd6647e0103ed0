"""Sending events to rooms: members are queried page by page and posted to in parallel. A recipient
found gone is handed to the deferred function, never cleaned up inside the request that found it."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.clock import utc_now
from shared.connections import ConnectionStore
from shared.deferred import Deferrer, GoneRecipient, gone_tasks
from shared.errors import ErrorCode, RoomcastError
from shared.gateway import Delivery, Gateway
from shared.observability import MetricUnit, logger, metrics
from shared.protocol import Frame, encode
from shared.rooms import Room


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
        data = encode(frame).encode("utf-8")
        if len(data) > self._max_outbound_bytes:
            raise RoomcastError(ErrorCode.PAYLOAD_TOO_LARGE, f"event exceeds {self._max_outbound_bytes} bytes")
        return data

    def emit(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> FanoutReport:
        """Send `frame` to every connection in the room; connections found gone are handed off."""
        report = self._post_to_room(company_id, room, self.encode(frame), exclude)
        self._hand_off(report.gone)
        return report

    def send(self, connection_id: str, frame: Frame) -> Delivery:
        (delivery,) = self._gateway.post_many([connection_id], self.encode(frame))
        if delivery is Delivery.GONE:
            self._hand_off([GoneRecipient(connectionId=connection_id, foundAt=utc_now())])
        return delivery

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

    def _post_to_room(self, company_id: str, room: Room, data: bytes, exclude: str | None) -> FanoutReport:
        recipients = [
            connection_id
            for page in self._store.members(company_id, room)
            for connection_id in page
            if connection_id != exclude
        ]
        report = FanoutReport(recipients=len(recipients))
        room_key = room.key(company_id)
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
